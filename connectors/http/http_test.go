package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/sim/cloud"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "http", "README.md")
}

func newSink(t *testing.T, url string, mod func(*Config)) (*HTTP, *connectors.Env) {
	t.Helper()
	h := &HTTP{Config: Config{URL: url}}
	if mod != nil {
		mod(&h.Config)
	}
	h.SetDefaults()
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "up", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return h, env
}

func TestConformance(t *testing.T) {
	var c *cloud.Cloud
	conntest.Run(t, conntest.Features{Sink: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			var err error
			c, err = cloud.Start(t.Context(), cloud.Config{MQTTAddr: "off"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			h, _ := newSink(t, c.HTTPURL()+"/ingest", nil)
			return h
		},
		Delivered: func(t *testing.T, seqs []uint64) bool {
			r := c.Report().Sources["conntest"]
			return r.Unique == uint64(len(seqs)) && len(r.Gaps) == 0
		},
	})
}

func TestFormatsReachTheCloud(t *testing.T) {
	c, err := cloud.Start(t.Context(), cloud.Config{MQTTAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := uint64(0)
	for _, format := range Formats {
		for _, gz := range []bool{false, true} {
			h, env := newSink(t, c.HTTPURL(), func(c *Config) { c.Format, c.Gzip = format, gz })
			if err := h.Start(t.Context(), env); err != nil {
				t.Fatal(err)
			}
			b := conntest.SampleBatch(5)
			for i := range b.Records {
				b.Records[i].Seq = first + uint64(i)
			}
			first += 5
			if err := h.Write(t.Context(), &b); err != nil {
				t.Fatalf("%s gzip=%v: %v", format, gz, err)
			}
		}
	}
	if r := c.Report(); r.Unique != 20 || r.Duplicates != 0 || r.Malformed != 0 {
		t.Fatalf("report %+v", r)
	}
}

// The container file must be readable by a standard Avro library with no
// other input than the file itself.
func TestOCFReadsWithGoavro(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		body, _ = io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != ContentTypeOCF || r.Header.Get("X-Ferry-Schema") != bus.FingerprintHex() {
			t.Errorf("headers %v", r.Header)
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	h, env := newSink(t, srv.URL, func(c *Config) { c.Headers = map[string]string{"Authorization": "Bearer x"} })
	_ = h.Start(t.Context(), env)
	b := conntest.SampleBatch(3)
	if err := h.Write(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	r, err := goavro.NewOCFReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("goavro cannot open the container: %v", err)
	}
	n := 0
	for r.Scan() {
		obj, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		recs := obj.(map[string]any)["records"].([]any)
		if len(recs) != 3 {
			t.Fatalf("%d records in the object", len(recs))
		}
		n++
	}
	if n != 1 || r.Err() != nil {
		t.Fatalf("%d objects, %v", n, r.Err())
	}
}

func TestRetryableAndPoisonAnswers(t *testing.T) {
	c, err := cloud.Start(t.Context(), cloud.Config{MQTTAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, env := newSink(t, c.HTTPURL(), nil)
	_ = h.Start(t.Context(), env)
	b := conntest.SampleBatch(2)

	c.SetHTTPStatus(503)
	err = h.Write(t.Context(), &b)
	if err == nil || errors.Is(err, connectors.ErrPoison) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("503 must be retryable: %v", err)
	}
	c.SetHTTPStatus(400)
	err = h.Write(t.Context(), &b)
	if !errors.Is(err, connectors.ErrPoison) {
		t.Fatalf("400 must be poison: %v", err)
	}
	f, err := os.Open(filepath.Join(env.Path("up"), "dead-letter.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("dead-letter file empty")
	}
	var dl struct {
		Status  int              `json:"status"`
		Answer  string           `json:"answer"`
		Records []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(sc.Bytes(), &dl); err != nil || dl.Status != 400 || len(dl.Records) != 2 || !strings.Contains(dl.Answer, "forced") {
		t.Fatalf("dead letter %+v %v", dl, err)
	}
	c.SetHTTPStatus(0)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	src, _ := conf.Parse("f.yaml", []byte("type: http\nurl: ftp://x\nformat: xml\nheaders: {\"bad name\": x}\ntls: {ca_file: /nonexistent}\n"))
	text := connectors.Decode(src, src.Root, &HTTP{}, "connectors.h").Error()
	for _, want := range []string{
		`f.yaml:2:6: connectors.h.url: "ftp://x" is not an http:// or https:// URL`,
		`f.yaml:3:9: connectors.h.format: "xml" is not one of avro, json`,
		`f.yaml:4:10: connectors.h.headers: "bad name" is not a header name`,
		`f.yaml:5:16: connectors.h.tls.ca_file: stat /nonexistent`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}
