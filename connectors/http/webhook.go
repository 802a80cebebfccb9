package http

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// webhook takes records in over HTTP: POST a JSON record, an array of them
// (or whatever the parse mapping reads) with the bearer token; 202 means the
// records were accepted, 400 says why the payload was not.
type webhook struct {
	cfg     *Config
	env     *connectors.Env
	parser  *parse.Parser
	batcher *parse.Batcher
	srv     *nethttp.Server
	ln      net.Listener
}

func startWebhook(env *connectors.Env, cfg *Config) (*webhook, error) {
	p, err := parse.New(cfg.Parse)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("http webhook: listen %s: %w", cfg.Listen, err)
	}
	w := &webhook{cfg: cfg, env: env, parser: p, batcher: parse.NewBatcher(env, cfg.BatchSize), ln: ln}
	mux := nethttp.NewServeMux()
	mux.HandleFunc(cfg.Path, w.serve)
	w.srv = &nethttp.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
		rw.Header().Set("Allow", "POST")
		nethttp.Error(rw, "POST records here", nethttp.StatusMethodNotAllowed)
		return
	}
	if w.cfg.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(w.cfg.Token)) != 1 {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
			nethttp.Error(rw, "missing or wrong bearer token", nethttp.StatusUnauthorized)
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(w.cfg.MaxBody)+1))
	if err != nil {
		nethttp.Error(rw, "reading the body: "+err.Error(), nethttp.StatusBadRequest)
		return
	}
	if int64(len(body)) > int64(w.cfg.MaxBody) {
		w.env.Error(fmt.Errorf("webhook: body over %s refused", w.cfg.MaxBody))
		nethttp.Error(rw, fmt.Sprintf("body larger than %s", w.cfg.MaxBody), nethttp.StatusRequestEntityTooLarge)
		return
	}
	n := 0
	err = w.batcher.Add(func(dst *bus.Batch) error {
		before := len(dst.Records)
		err := w.parser.Parse(body, r.URL.Path, dst)
		n = len(dst.Records) - before
		return err
	})
	if err != nil {
		nethttp.Error(rw, err.Error(), nethttp.StatusBadRequest)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(nethttp.StatusAccepted)
	fmt.Fprintf(rw, "{\"accepted\":%d}\n", n)
}

// close stops taking requests, waits for those in progress, then emits
// what they handed in.
func (w *webhook) close(ctx context.Context) error {
	err := w.srv.Shutdown(ctx)
	return errors.Join(err, w.batcher.Close(ctx))
}
