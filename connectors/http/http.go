// Package http is the HTTP batch uplink: a sink that POSTs batches as an
// Avro object container file, JSON lines or a JSON array, optionally
// compressed (gzip, zstd), and treats a 2xx as the acknowledgement. It pipelines: with a
// spool's window of N, up to N requests are outstanding, acknowledged in
// order. Connection errors, timeouts, 408, 429 and 5xx are retried with
// back-off; so are answers that say the sink is misconfigured (401, 403,
// 404 and the other 3xx/4xx), which put the sink down with the cause. Only
// answers that refuse this batch's content (400, 413, 415, 422) send it to
// the dead-letter file, so the queue moves on; `ferry deadletter replay`
// sends those again. It is also a webhook source (webhook.go).
package http

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
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
	// DeadLetterMaxSize is the size at which the dead-letter file is
	// rotated (NAME.1, NAME.2, …); DeadLetterFiles counts the files kept,
	// the current one included. The oldest beyond them is deleted, and
	// what it held counted and logged.
	DeadLetterMaxSize conf.Size `yaml:"dead_letter_max_size"`
	DeadLetterFiles   int       `yaml:"dead_letter_files"`
	// MaxBackoff caps the wait between attempts after a failure.
	MaxBackoff conf.Duration `yaml:"max_backoff"`
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
	// Ack is when the webhook answers 202: "received" (the records were
	// parsed and wait in memory for the next batch flush, within
	// batch_interval; a crash loses them) or "emitted" (after the bus took
	// them, so a 202 means they are as safe as the route makes them).
	Ack string `yaml:"ack"`
	// BodyTimeout bounds reading one request body, after its headers.
	BodyTimeout   conf.Duration `yaml:"body_timeout"`
	Parse         parse.Config  `yaml:"parse"`
	BatchSize     int           `yaml:"batch_size"`
	BatchInterval conf.Duration `yaml:"batch_interval"`
}

// Values of ack.
const (
	AckReceived = "received"
	AckEmitted  = "emitted"
)

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
	if c.DeadLetterMaxSize == 0 {
		c.DeadLetterMaxSize = 16 << 20
	}
	if c.DeadLetterFiles == 0 {
		c.DeadLetterFiles = 4
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = conf.Duration(30 * time.Second)
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
	if c.Ack == "" {
		c.Ack = AckReceived
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
	if c.URL != "" {
		if c.DeadLetterMaxSize < 1024 {
			p.Add("dead_letter_max_size", "%s is too small; use at least 1KiB (default 16MiB)", c.DeadLetterMaxSize)
		}
		if c.DeadLetterFiles < 1 {
			p.Add("dead_letter_files", "must be at least 1 (the current file), got %d", c.DeadLetterFiles)
		}
		if c.MaxBackoff < conf.Duration(100*time.Millisecond) {
			p.Add("max_backoff", "%s is too short; use at least 100ms (default 30s)", c.MaxBackoff)
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
		if c.Ack != AckReceived && c.Ack != AckEmitted {
			p.Add("ack", "%q is not one of %s (202 once parsed), %s (202 once the bus took the records)", c.Ack, AckReceived, AckEmitted)
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
	dead   *deadLetters
	retry  retryState

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
	// A connection per request in flight stays open between batches.
	tr.MaxIdleConnsPerHost = 64
	h.client = &nethttp.Client{Transport: tr, Timeout: h.Timeout.D()}
	h.retry.bo = connectors.Backoff{Min: time.Second, Max: h.MaxBackoff.D()}
	h.dead = &deadLetters{path: env.Path(h.deadLetterPath(env.Name)), max: int64(h.DeadLetterMaxSize), files: h.DeadLetterFiles, env: env}
	if h.Listen != "" {
		hook, err := startWebhook(env, &h.Config)
		if err != nil {
			return err
		}
		h.hook = hook
	}
	return nil
}

// DeadLetterPath is where refused batches go: dead_letter, or
// <module>/dead-letter.jsonl, relative to the data dir.
func (h *HTTP) deadLetterPath(module string) string {
	if h.DeadLetter != "" {
		return h.DeadLetter
	}
	return filepath.Join(module, "dead-letter.jsonl")
}

// ErrRefused marks an answer that says the sink itself is misconfigured
// (401, 403, 404, 405, a redirect not followed …): no batch would get
// through, so each is kept and sent again once the configuration (a token,
// the URL) is fixed, never dead-lettered.
var ErrRefused = errors.New("the endpoint refused the request: check url, headers and credentials; batches wait and are sent again")

// maxWaitInWrite bounds how long one Write waits out the back-off, so a
// long max_backoff never looks like a stuck write to the runtime's
// watchdog; the write returns the cause and is called again.
const maxWaitInWrite = 10 * time.Second

// Write POSTs the batch, once the back-off after a failure has passed.
func (h *HTTP) Write(ctx context.Context, b *bus.Batch) error {
	if d, cause := h.retry.pending(); d > 0 {
		if d > maxWaitInWrite {
			if err := connectors.Sleep(ctx, maxWaitInWrite); err != nil {
				return err
			}
			return cause
		}
		if err := connectors.Sleep(ctx, d); err != nil {
			return err
		}
	}
	req, err := h.request(ctx, b)
	if err != nil {
		return err
	}
	return h.settle(b, h.post(req))
}

// Send implements connectors.Pipeliner: the request goes out at once and
// wait returns its outcome. While the sink backs off after a failure, Send
// fails at once; the runtime then resolves what is in flight and rewrites
// in order (through Write, which waits the back-off out).
func (h *HTTP) Send(ctx context.Context, b *bus.Batch) (func(context.Context) error, error) {
	if d, cause := h.retry.pending(); d > 0 {
		return nil, fmt.Errorf("%w: next attempt in %s: %w", connectors.ErrNotConnected, d.Round(time.Millisecond), cause)
	}
	req, err := h.request(ctx, b)
	if err != nil {
		return nil, err
	}
	done := make(chan answer, 1)
	go func() { done <- h.post(req) }()
	return func(wctx context.Context) error {
		select {
		case a := <-done:
			return h.settle(b, a)
		case <-wctx.Done():
			return wctx.Err()
		}
	}, nil
}

// answer is the outcome of one POST.
type answer struct {
	status     int
	statusText string
	body       string
	retryAfter time.Duration
	err        error
}

// request encodes b and builds its POST.
func (h *HTTP) request(ctx context.Context, b *bus.Batch) (*nethttp.Request, error) {
	body, ct := h.encode(b)
	body, zenc := h.compress(body)
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("http %s: %w", h.URL, err)
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
	return req, nil
}

// post sends one request.
func (h *HTTP) post(req *nethttp.Request) answer {
	resp, err := h.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	resp.Body.Close()
	a := answer{status: resp.StatusCode, statusText: resp.Status, body: strings.TrimSpace(string(text))}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			a.retryAfter = time.Duration(n) * time.Second
		}
	}
	return a
}

// Classes of answers.
const (
	classOK        = iota
	classPayload   // this batch's content: dead-lettered
	classConfig    // the sink's configuration: retried, the sink down
	classTransient // the far side or the link: retried
)

// Classify sorts a status code: 2xx taken; 400, 413, 415, 422 refuse the
// payload; 408, 425, 429 and 5xx are transient; every other answer (401,
// 403, 404, 405, a 3xx the client did not follow …) says the sink is
// misconfigured.
func classify(status int) int {
	switch {
	case status >= 200 && status < 300:
		return classOK
	case status == 400 || status == 413 || status == 415 || status == 422:
		return classPayload
	case status == 408 || status == 425 || status == 429 || status >= 500:
		return classTransient
	}
	return classConfig
}

// settle turns an answer into the batch's outcome and the sink's back-off.
func (h *HTTP) settle(b *bus.Batch, a answer) error {
	if a.err != nil {
		err := fmt.Errorf("http %s: %w", h.URL, a.err)
		h.retry.failed(err, 0)
		return err
	}
	switch classify(a.status) {
	case classOK:
		h.retry.succeeded()
		return nil
	case classPayload:
		h.retry.succeeded() // the far side is there and reads what it is sent
		reason := fmt.Errorf("http %s: %s: %s", h.URL, a.statusText, a.body)
		if err := h.dead.add(h.URL, b, a.status, a.body); err != nil {
			// Without the dead-letter copy, skipping the batch would lose it:
			// keep retrying instead and say why.
			err = fmt.Errorf("%w; dead-letter file: %w", reason, err)
			h.retry.failed(err, 0)
			return err
		}
		return fmt.Errorf("%w: %w", connectors.ErrPoison, reason)
	case classConfig:
		err := fmt.Errorf("http %s: %s: %s: %w", h.URL, a.statusText, a.body, ErrRefused)
		h.retry.failed(err, a.retryAfter)
		return err
	}
	err := fmt.Errorf("http %s: %s: %s", h.URL, a.statusText, a.body)
	h.retry.failed(err, a.retryAfter)
	return err
}

// retryState is the sink's back-off after a failure, shared by the
// requests in flight: a burst of failures in one window is one step of
// back-off, not one per request.
type retryState struct {
	mu    sync.Mutex
	bo    connectors.Backoff
	until time.Time
	cause error
}

func (r *retryState) failed(err error, retryAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.cause = err
	if now.Before(r.until) {
		return
	}
	d := r.bo.Next()
	if retryAfter > d {
		d = min(retryAfter, max(r.bo.Max, d))
	}
	r.until = now.Add(d)
}

func (r *retryState) succeeded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bo.Reset()
	r.until, r.cause = time.Time{}, nil
}

// pending returns how long the back-off still runs, and its cause.
func (r *retryState) pending() (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := time.Until(r.until)
	if d <= 0 {
		return 0, nil
	}
	return d, r.cause
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
	_ connectors.Sink      = (*HTTP)(nil)
	_ connectors.Pipeliner = (*HTTP)(nil)
	_ connectors.Source    = (*HTTP)(nil)
)
