package http

import (
	"bytes"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/compress"
	"github.com/ferry-gateway/ferry/sim/cloud"
)

func compressBatch(n int) *bus.Batch {
	b := &bus.Batch{}
	now := time.Now().UnixNano()
	for i := range n {
		b.Records = append(b.Records, bus.Record{Source: "gen", Device: "press-1", Tag: "temp",
			Value: bus.Double(20 + float64(i%7)/4), SourceTime: now, IngestTime: now, Seq: uint64(i + 1)})
	}
	return b
}

// TestCompressZstdAndGzip sends json-lines with each compression to a
// server that reads Content-Encoding as a consumer would, and checks every
// record arrives and the body really is smaller.
func TestCompressZstdAndGzip(t *testing.T) {
	type got struct {
		enc        string
		wire, body []byte
	}
	bodies := make(chan got, 4)
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		wire, _ := io.ReadAll(r.Body)
		enc := r.Header.Get("Content-Encoding")
		body, err := compress.Decode(enc, wire)
		if err != nil {
			nethttp.Error(w, err.Error(), nethttp.StatusBadRequest)
			return
		}
		bodies <- got{enc, wire, body}
	}))
	defer srv.Close()
	var plain int
	for _, z := range []string{"none", "gzip", "zstd"} {
		h, env := newSink(t, srv.URL, func(c *Config) { c.Format, c.Compress = "json-lines", z })
		if err := h.Start(t.Context(), env); err != nil {
			t.Fatal(err)
		}
		if err := h.Write(t.Context(), compressBatch(200)); err != nil {
			t.Fatalf("%s: %v", z, err)
		}
		g := <-bodies
		if lines := bytes.Count(g.body, []byte("\n")); lines != 200 {
			t.Fatalf("%s: %d lines arrived, want 200", z, lines)
		}
		switch z {
		case "none":
			plain = len(g.wire)
			if g.enc != "" {
				t.Fatalf("uncompressed body marked %q", g.enc)
			}
		default:
			if g.enc != z {
				t.Fatalf("Content-Encoding %q, want %q", g.enc, z)
			}
			if len(g.wire)*3 > plain {
				t.Fatalf("%s: %d bytes on the wire, plain was %d: not compressed", z, len(g.wire), plain)
			}
		}
		t.Logf("json-lines %-4s: %.1f bytes/record", z, float64(len(g.wire))/200)
	}
}

// TestCompressGzipReachesSimCloud: sim/cloud decodes gzip bodies, so the
// Avro container arrives whole.
func TestCompressGzipReachesSimCloud(t *testing.T) {
	c, err := cloud.Start(t.Context(), cloud.Config{MQTTAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, env := newSink(t, c.HTTPURL()+"/ingest", func(c *Config) { c.Compress = "gzip" })
	if err := h.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(t.Context(), compressBatch(50)); err != nil {
		t.Fatal(err)
	}
	if r := c.Report().Sources["gen"]; r.Unique != 50 {
		t.Fatalf("cloud has %+v", r)
	}
}

func TestCompressValidation(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "http://x:1", Compress: "lz4"}, `compress: "lz4" is not one of none, gzip, zstd`},
		{Config{URL: "http://x:1", Compress: "zstd", Gzip: true}, "contradicts gzip: true"},
	} {
		c.cfg.SetDefaults()
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg.Compress, err, c.want)
		}
	}
}
