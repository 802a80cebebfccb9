// Package http is the HTTP batch uplink: a sink that POSTs batches as an
// Avro object container file, JSON lines or a JSON array, optionally gzipped, and treats a
// 2xx as the acknowledgement. Connection errors, timeouts and 5xx are retried
// (by the runtime, with back-off); a 4xx is a poison batch, written to a
// dead-letter file with the answer so the queue moves on.
package http

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "http",
		Roles:   connectors.RoleSink | connectors.RoleSource,
		New:     func() connectors.Connector { return &HTTP{} },
		Sample:  sample,
		Summary: "POST batches (Avro container file, JSON lines or a JSON array, gzip) to an endpoint; a webhook that takes records in",
	})
}

// Config is the HTTP sink's section of ferry.yaml.
type Config struct {
	URL        string            `yaml:"url"`
	Format     string            `yaml:"format"`
	Gzip       bool              `yaml:"gzip"`
	Compress   string            `yaml:"compress"` // gzip or zstd (compress.go); gzip: true is compress: gzip
	Headers    map[string]string `yaml:"headers"`
	Timeout    conf.Duration     `yaml:"timeout"`
	TLS        tlsconf.Config    `yaml:"tls"`
	DeadLetter string            `yaml:"dead_letter"`
	// JSONOutput: fields and time_format of the JSON formats.
	bus.JSONOutput `yaml:",inline"`

	// Listen makes the connector a webhook source as well.
	Listen  string    `yaml:"listen"`
	Path    string    `yaml:"path"`
	Token   string    `yaml:"token"`
	MaxBody conf.Size `yaml:"max_body"`
	// MaxConcurrent caps the webhook requests whose bodies are read at
	// once, so the webhook holds at most MaxConcurrent × MaxBody; more are
	// answered 503 at once.
	MaxConcurrent int `yaml:"max_concurrent"`
	// BodyTimeout bounds reading one request body, after its headers.
	BodyTimeout   conf.Duration `yaml:"body_timeout"`
	Parse         parse.Config  `yaml:"parse"`
	BatchSize     int           `yaml:"batch_size"`
	BatchInterval conf.Duration `yaml:"batch_interval"`
}

// Formats are the body formats: a request carries a batch, so there is no
// one-object-per-message json here.
var Formats = []string{"avro", "json-lines", "json-array"}

// ContentTypeOCF is the content type of an Avro object container file.
const ContentTypeOCF = "application/avro"

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = "avro"
	}
	if c.Timeout == 0 {
		c.Timeout = conf.Duration(10 * time.Second)
	}
	if c.Path == "" {
		c.Path = "/ingest"
	}
	if c.MaxBody == 0 {
		c.MaxBody = 10 << 20
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 8
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = conf.Duration(30 * time.Second)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = conf.Duration(20 * time.Millisecond)
	}
	c.Parse.SetDefaults()
}

// Validate checks the config.
func (c *Config) Validate() error {
	var p conf.Problems
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" && c.Listen == "":
		p.Add("url", "missing url (to send batches) or listen (to take records in)")
	case c.URL == "":
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		p.Add("url", "%q is not an http:// or https:// URL", c.URL)
	}
	switch {
	case c.Format == "json":
		// Until issue 14 "json" meant JSON lines; elsewhere it now means one
		// object per message, which a batch request is not.
		p.Add("format", "json was renamed: for the JSON lines it meant, write json-lines; json-array sends one JSON array per request")
	case !slices.Contains(Formats, c.Format):
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	}
	_, isJSON := bus.ParseJSONShape(c.Format)
	c.JSONOutput.Check(isJSON || c.Format == "json", c.Format, p.Add)
	c.checkCompress(p.Add)
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			p.Add("headers", "%q is not a header name", k)
		}
	}
	if u != nil && u.Scheme == "https" || c.TLS != (tlsconf.Config{}) {
		p.Nest("tls", c.TLS.Validate())
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			p.Add("listen", "%q is not host:port", c.Listen)
		}
		if !strings.HasPrefix(c.Path, "/") {
			p.Add("path", "%q must start with /", c.Path)
		}
		p.Nest("parse", c.Parse.Validate())
		if c.MaxBody < 1 {
			p.Add("max_body", "must be at least 1B, got %s", c.MaxBody)
		}
		if c.MaxConcurrent < 1 {
			p.Add("max_concurrent", "must be at least 1, got %d", c.MaxConcurrent)
		}
		if c.BodyTimeout <= 0 {
			p.Add("body_timeout", "must be positive, got %s", c.BodyTimeout)
		}
	}
	return p.Err()
}

// HTTP is the sink.
type HTTP struct {
	Config `yaml:",inline"`

	env    *connectors.Env
	client *nethttp.Client
	dlMu   sync.Mutex
	dlPath string

	// Under encMu: the encoder, a gzip writer kept for reuse (a new one
	// costs hundreds of KB), the size of the last body, and the pool of
	// uncompressed bodies of a gzipped sink.
	encMu sync.Mutex
	enc   *bus.JSONEncoder
	gz    *gzip.Writer
	last  int
	bufs  bus.Buffers

	hook *webhook // nil unless listening
	z    compressor
}

// Outputs implements connectors.Source: only a listening instance emits.
func (h *HTTP) Outputs() []string {
	if h.Listen == "" {
		return nil
	}
	return []string{connectors.DefaultOutput}
}

// Start builds the client. Nothing is dialled until the first batch.
func (h *HTTP) Start(_ context.Context, env *connectors.Env) error {
	h.env = env
	tr := nethttp.DefaultTransport.(*nethttp.Transport).Clone()
	if strings.HasPrefix(h.URL, "https://") {
		u, _ := url.Parse(h.URL)
		tc, err := h.TLS.Build(u.Hostname())
		if err != nil {
			return fmt.Errorf("http %s: %w", h.URL, err)
		}
		tr.TLSClientConfig = tc
	}
	h.client = &nethttp.Client{Transport: tr, Timeout: h.Timeout.D()}
	if h.DeadLetter == "" {
		h.DeadLetter = filepath.Join(env.Name, "dead-letter.jsonl")
	}
	h.dlPath = env.Path(h.DeadLetter)
	if h.Listen != "" {
		hook, err := startWebhook(env, &h.Config)
		if err != nil {
			return err
		}
		h.hook = hook
	}
	return nil
}

// Write POSTs the batch.
func (h *HTTP) Write(ctx context.Context, b *bus.Batch) error {
	body, ct := h.encode(b)
	body, zenc := h.compress(body)
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("http %s: %w", h.URL, err)
	}
	req.Header.Set("Content-Type", ct)
	if h.Format == "avro" {
		req.Header.Set("X-Ferry-Schema", bus.FingerprintHex())
	}
	if h.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if zenc != "" {
		req.Header.Set("Content-Encoding", zenc)
	}
	if b.Backfill {
		// Sent behind newer data (drain mode live-first): history, not
		// the current value.
		req.Header.Set("X-Ferry-Backfill", "true")
	}
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http %s: %w", h.URL, err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != nethttp.StatusRequestTimeout && resp.StatusCode != nethttp.StatusTooManyRequests:
		reason := fmt.Errorf("http %s: %s: %s", h.URL, resp.Status, strings.TrimSpace(string(answer)))
		if err := h.deadLetter(b, resp.StatusCode, string(answer)); err != nil {
			// Without the dead-letter copy, skipping the batch would lose it:
			// keep retrying instead and say why.
			return fmt.Errorf("%w; dead-letter file: %w", reason, err)
		}
		return fmt.Errorf("%w: %w", connectors.ErrPoison, reason)
	}
	return fmt.Errorf("http %s: %s: %s", h.URL, resp.Status, strings.TrimSpace(string(answer)))
}

// encode returns the body, gzipped if asked. The body is not pooled: the
// transport may read it after Do returns (an answer that came before the
// whole body went out, a redirect), so it gets a buffer of its own, sized
// from the last one rather than grown from nothing.
func (h *HTTP) encode(b *bus.Batch) ([]byte, string) {
	h.encMu.Lock()
	defer h.encMu.Unlock()
	if h.enc == nil {
		h.enc = h.JSONOutput.Encoder()
	}
	var buf *bus.Buffer
	out := make([]byte, 0, h.last+h.last/8+64)
	if h.Gzip {
		// Compressed at once, so the uncompressed form can be pooled.
		buf = h.bufs.Get()
		out, buf.B = buf.B, out
	}
	ct := ContentTypeOCF
	if shape, ok := bus.ParseJSONShape(h.Format); ok {
		out = shape.Append(h.enc, out, b.Records)
		ct = shape.ContentType()
	} else {
		out = appendOCF(out, b)
	}
	if h.Gzip {
		out, buf.B = buf.B, out
		zb := bytes.NewBuffer(out)
		if h.gz == nil {
			h.gz = gzip.NewWriter(zb)
		} else {
			h.gz.Reset(zb)
		}
		_, _ = h.gz.Write(buf.B)
		_ = h.gz.Close()
		out = zb.Bytes()
		h.bufs.Put(buf)
	}
	h.last = len(out)
	return out, ct
}

// deadLetter appends the refused batch and the answer as one JSON line.
func (h *HTTP) deadLetter(b *bus.Batch, status int, answer string) error {
	h.dlMu.Lock()
	defer h.dlMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(h.dlPath), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(h.dlPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(struct {
		Time    time.Time       `json:"time"`
		URL     string          `json:"url"`
		Status  int             `json:"status"`
		Answer  string          `json:"answer"`
		Records json.RawMessage `json:"records"`
	}{time.Now().UTC(), h.URL, status, answer, jsonArray(b)})
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func jsonArray(b *bus.Batch) []byte {
	out := []byte{'['}
	for i := range b.Records {
		if i > 0 {
			out = append(out, ',')
		}
		out = b.Records[i].AppendJSON(out)
	}
	return append(out, ']')
}

// Stop closes the webhook listener and releases idle connections.
func (h *HTTP) Stop(ctx context.Context) error {
	if h.client != nil {
		h.client.CloseIdleConnections()
	}
	if h.hook != nil {
		return h.hook.close(ctx)
	}
	return nil
}

var (
	_ connectors.Sink   = (*HTTP)(nil)
	_ connectors.Source = (*HTTP)(nil)
)
