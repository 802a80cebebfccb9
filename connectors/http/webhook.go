package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// webhook takes records in over HTTP: POST a JSON record, an array of them
// (or whatever the parse mapping reads) with the bearer token (the scheme
// in any case, RFC 7235), plain or gzipped (Content-Encoding: gzip, the
// decompressed size bounded by max_body); 202 means the records were
// accepted (ack: received, parsed and waiting for the next flush; or ack:
// emitted, taken by the bus), 400 says why the payload was not.
type webhook struct {
	cfg     *Config
	env     *connectors.Env
	parser  *parse.Parser
	batcher *parse.Batcher
	srv     *nethttp.Server
	ln      net.Listener

	slots   chan struct{} // a token per request whose body is being read
	refused *prometheus.CounterVec
	logs    map[string]*connectors.Burst // one log window per refusal reason
}

// Reasons the webhook refuses a request, the reason label of
// ferry_webhook_refused_total.
const (
	refusedUnauthorized = "unauthorized"
	refusedBusy         = "busy"
	refusedTooLarge     = "too_large"
	refusedBodyTimeout  = "body_timeout"
	refusedBadRequest   = "bad_request"
	refusedEncoding     = "unsupported_encoding"
	refusedMethod       = "method"
)

func startWebhook(env *connectors.Env, cfg *Config) (*webhook, error) {
	p, err := parse.New(cfg.Parse)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("http webhook: listen %s: %w", cfg.Listen, err)
	}
	w := &webhook{cfg: cfg, env: env, parser: p, batcher: parse.NewBatcher(env, cfg.BatchSize), ln: ln,
		slots: make(chan struct{}, cfg.MaxConcurrent), logs: map[string]*connectors.Burst{}}
	w.refused = connectors.Collector(env.Metrics.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_webhook_refused_total",
		Help: "Webhook requests refused: unauthorized (401), busy (503, max_concurrent bodies being read), too_large (413, over max_body, compressed or not), body_timeout (408), bad_request (400, a body that does not parse), unsupported_encoding (415), method (405).",
	}, []string{"module", "reason"}))
	for _, r := range []string{refusedUnauthorized, refusedBusy, refusedTooLarge, refusedBodyTimeout, refusedBadRequest, refusedEncoding, refusedMethod} {
		w.refused.WithLabelValues(env.Name, r) // every series from the start, at 0
		w.logs[r] = &connectors.Burst{Quiet: 10 * time.Second}
	}
	mux := nethttp.NewServeMux()
	mux.HandleFunc(cfg.Path, w.serve)
	// The body's own deadline is set per request, once a slot is taken.
	w.srv = &nethttp.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := w.srv.Serve(ln); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
			env.Down(fmt.Errorf("webhook server: %w", err))
		}
	}()
	env.Go("flush", func(ctx context.Context) error { return w.batcher.Run(ctx, cfg.BatchInterval.D()) })
	env.Logger.Info("webhook listening", "addr", "http://"+ln.Addr().String()+cfg.Path)
	return w, nil
}

// Addr is the webhook's bound address.
func (h *HTTP) WebhookAddr() string {
	if h.hook == nil {
		return ""
	}
	return h.hook.ln.Addr().String()
}

func (w *webhook) serve(rw nethttp.ResponseWriter, r *nethttp.Request) {
	if r.Method != nethttp.MethodPost {
		w.refuse(r, refusedMethod)
		rw.Header().Set("Allow", "POST")
		nethttp.Error(rw, "POST records here", nethttp.StatusMethodNotAllowed)
		return
	}
	if w.cfg.Token != "" && !bearer(r.Header.Get("Authorization"), w.cfg.Token) {
		w.refuse(r, refusedUnauthorized)
		rw.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
		nethttp.Error(rw, "missing or wrong bearer token", nethttp.StatusUnauthorized)
		return
	}
	gz := false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		w.refuse(r, refusedEncoding)
		rw.Header().Set("Accept-Encoding", "gzip")
		nethttp.Error(rw, fmt.Sprintf("Content-Encoding %q is not supported; send gzip or none", enc), nethttp.StatusUnsupportedMediaType)
		return
	}
	if r.ContentLength > int64(w.cfg.MaxBody) {
		// Before a byte of the body is read (a client that sent Expect:
		// 100-continue sends none); the connection is closed rather than
		// drained.
		w.tooLarge(rw, r)
		return
	}
	// Bodies are read max_concurrent at a time: memory stays within
	// max_concurrent × max_body however many clients post at once.
	select {
	case w.slots <- struct{}{}:
		defer func() { <-w.slots }()
	default:
		w.refuse(r, refusedBusy)
		rw.Header().Set("Retry-After", "1")
		nethttp.Error(rw, fmt.Sprintf("busy: max_concurrent (%d) requests are being read; retry", w.cfg.MaxConcurrent), nethttp.StatusServiceUnavailable)
		return
	}
	_ = nethttp.NewResponseController(rw).SetReadDeadline(time.Now().Add(w.cfg.BodyTimeout.D()))
	body, err := readBody(r, int64(w.cfg.MaxBody))
	if err == nil && gz && int64(len(body)) <= int64(w.cfg.MaxBody) {
		body, err = gunzip(body, int64(w.cfg.MaxBody))
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.refuse(r, refusedBodyTimeout)
		nethttp.Error(rw, fmt.Sprintf("body not received within body_timeout (%s)", w.cfg.BodyTimeout), nethttp.StatusRequestTimeout)
		return
	case errors.Is(err, errGzip):
		w.refuse(r, refusedBadRequest)
		nethttp.Error(rw, err.Error(), nethttp.StatusBadRequest)
		return
	case err != nil:
		w.refuse(r, refusedBadRequest)
		nethttp.Error(rw, "reading the body: "+err.Error(), nethttp.StatusBadRequest)
		return
	case int64(len(body)) > int64(w.cfg.MaxBody):
		// As soon as one byte more than max_body was read (or inflated):
		// the rest is never read.
		w.tooLarge(rw, r)
		return
	}
	n := 0
	parse := func(dst *bus.Batch) error {
		before := len(dst.Records)
		err := w.parser.Parse(body, r.URL.Path, dst)
		n = len(dst.Records) - before
		return err
	}
	if w.cfg.Ack == AckEmitted {
		err = w.emit(r.Context(), parse)
	} else {
		err = w.batcher.Add(parse)
	}
	var pe parseError
	switch {
	case errors.As(err, &pe):
		w.refuse(r, refusedBadRequest)
		nethttp.Error(rw, err.Error(), nethttp.StatusBadRequest)
		return
	case err != nil && w.cfg.Ack == AckEmitted:
		// The bus did not take the records: the client should send again.
		rw.Header().Set("Retry-After", "1")
		nethttp.Error(rw, "records not handed on: "+err.Error(), nethttp.StatusServiceUnavailable)
		return
	case err != nil:
		w.refuse(r, refusedBadRequest)
		nethttp.Error(rw, err.Error(), nethttp.StatusBadRequest)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(nethttp.StatusAccepted)
	fmt.Fprintf(rw, "{\"accepted\":%d}\n", n)
}

// parseError marks a body that did not parse (400), apart from a bus that
// did not take the records (503 under ack: emitted).
type parseError struct{ error }

func (e parseError) Unwrap() error { return e.error }

// emit parses the body into a batch of its own and emits it: the answer
// waits until the bus took the records (ack: emitted).
func (w *webhook) emit(ctx context.Context, parse func(*bus.Batch) error) error {
	var b bus.Batch
	if err := parse(&b); err != nil {
		return parseError{err}
	}
	if len(b.Records) == 0 {
		return nil
	}
	return w.env.Emit(ctx, &b)
}

func (w *webhook) tooLarge(rw nethttp.ResponseWriter, r *nethttp.Request) {
	w.refuse(r, refusedTooLarge)
	rw.Header().Set("Connection", "close")
	nethttp.Error(rw, fmt.Sprintf("body larger than %s", w.cfg.MaxBody), nethttp.StatusRequestEntityTooLarge)
}

// bearer checks an Authorization header against the token; the scheme is
// case-insensitive (RFC 7235), the token compared in constant time.
func bearer(header, token string) bool {
	scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

var errGzip = errors.New("body is not valid gzip")

// gunzip inflates a gzipped body, reading at most max+1 bytes of output:
// a body that inflates past max_body (a zip bomb) is cut there and
// refused with 413 by the caller, never held whole.
func gunzip(body []byte, max int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errGzip, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errGzip, err)
	}
	return out, nil
}

// readBody reads the body into one buffer of its declared length, or, when
// none is declared, up to max+1 bytes, so that a longer one is seen
// without being held.
func readBody(r *nethttp.Request, max int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= max {
		buf := make([]byte, n) // the server stops the body at its declared length
		_, err := io.ReadFull(r.Body, buf)
		return buf, err
	}
	return io.ReadAll(io.LimitReader(r.Body, max+1))
}

// refuse counts a refused request and logs it once per window and reason.
func (w *webhook) refuse(r *nethttp.Request, reason string) {
	w.refused.WithLabelValues(w.env.Name, reason).Inc()
	w.logs[reason].Log(w.env.Logger, slog.LevelWarn, "webhook request refused",
		slog.String("reason", reason), slog.String("remote", r.RemoteAddr))
}

// close stops taking requests, waits for those in progress, then emits
// what they handed in.
func (w *webhook) close(ctx context.Context) error {
	err := w.srv.Shutdown(ctx)
	if err != nil {
		_ = w.srv.Close() // requests still in progress (a stalled body) are cut
	}
	return errors.Join(err, w.batcher.Close(ctx))
}
