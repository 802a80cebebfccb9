package http

import (
	"bufio"
	"bytes"
	"compress/gzip"
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
	if r := c.Report(); r.Unique != first || r.Duplicates != 0 || r.Malformed != 0 {
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
		`f.yaml:3:9: connectors.h.format: "xml" is not one of avro, json-lines, json-array`,
		`f.yaml:4:10: connectors.h.headers: "bad name" is not a header name`,
		`f.yaml:5:16: connectors.h.tls.ca_file: stat /nonexistent`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

// TestJSONBodies: a json-array body is one JSON value (what a consumer that
// reads the body with one JSON parse expects), json-lines a value per line;
// gzip or not, and the same sink sends many bodies in a row.
func TestJSONBodies(t *testing.T) {
	type body struct {
		ct, enc string
		p       []byte
	}
	got := make(chan body, 16)
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		p, _ := io.ReadAll(r.Body)
		got <- body{r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), p}
	}))
	defer srv.Close()
	for _, format := range []string{"json-array", "json-lines"} {
		for _, gz := range []bool{false, true} {
			h, env := newSink(t, srv.URL, func(c *Config) {
				c.Format, c.Gzip, c.Fields, c.TimeFormat = format, gz, []string{"tag", "value", "ingest_ts"}, "unix_ms"
			})
			if err := h.Start(t.Context(), env); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{3, 300, 2} {
				b := conntest.SampleBatch(n)
				if err := h.Write(t.Context(), &b); err != nil {
					t.Fatal(err)
				}
				bd := <-got
				p := bd.p
				if gz {
					zr, err := gzip.NewReader(bytes.NewReader(p))
					if err != nil {
						t.Fatal(err)
					}
					if p, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				var recs []map[string]any
				if format == "json-array" {
					d := json.NewDecoder(bytes.NewReader(p))
					if err := d.Decode(&recs); err != nil {
						t.Fatal(err)
					}
					if _, err := d.Token(); !errors.Is(err, io.EOF) {
						t.Fatalf("body holds more than one JSON value: %.100q", p)
					}
				} else {
					for line := range bytes.Lines(p) {
						var r map[string]any
						if err := json.Unmarshal(line, &r); err != nil {
							t.Fatal(err)
						}
						recs = append(recs, r)
					}
				}
				wantCT := map[string]string{"json-array": "application/json", "json-lines": "application/x-ndjson"}[format]
				if bd.ct != wantCT || len(recs) != b.Len() || len(recs[0]) != 3 || recs[0]["ingest_ts"] != float64(b.Records[0].IngestTime/1e6) {
					t.Fatalf("%s gzip=%v: %s, %d records (%v), want %s, %d", format, gz, bd.ct, len(recs), recs[0], wantCT, b.Len())
				}
			}
		}
	}
}

func TestFormatRenamed(t *testing.T) {
	src, _ := conf.Parse("f.yaml", []byte("type: http\nurl: http://x/in\nformat: json\n"))
	err := connectors.Decode(src, src.Root, &HTTP{}, "connectors.h")
	want := `f.yaml:3:9: connectors.h.format: json was renamed: for the JSON lines it meant, write json-lines`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %s", err, want)
	}
}
