// Package admin serves ferry's admin HTTP endpoint: health, readiness,
// Prometheus metrics, the status API, the recent events, a short history of
// throughput and spool depth, and the status page that draws them.
//
// Routes:
//
//	GET /healthz                200 while the process serves
//	GET /readyz                 200 once every module started, else 503 naming the rest
//	GET /metrics                Prometheus
//	GET /api/status             every module and route, with counters, spool or buffer
//	GET /api/events[?after=ID]  the last events (state changes, errors, drops,
//	                            reloads), oldest first; with after, only those
//	                            with a higher id, so a client polls for what is new
//	GET /api/history            ten minutes of per-second totals
//	GET /api/graph              how sources, routes and sinks are wired
//	GET /api/tags               the last value of every tag (?source= &device=
//	                            &q=GLOB &quality= &stale= &offset= &limit=)
//	GET /api/tag                one tag with its recent values (?source= &device= &tag=)
//	GET /api/devices            every device: connector, state, last error, counters
//	POST /api/write             a write to a tag, as an MQTT command is written
//	POST /api/discover/modbus   scan a Modbus range, decoded every way
//	POST /api/discover/opcua    one level of an OPC UA address space
//	POST /api/discover/snippet  a connector section for what was picked, checked
//	GET /                       the status page
//
// Writes and discovery are off on an address off loopback without
// authentication; Protect (and Serve) put the authentication in front.
package admin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router"
)

// ui is the status page: plain HTML, CSS and JavaScript, no build step and
// nothing fetched from elsewhere.
//
//go:embed ui
var ui embed.FS

// History defaults: one sample a second, ten minutes kept.
const (
	sampleEvery = time.Second
	historySize = 600
)

// contentPolicy keeps the page to its own assets and its own API.
const contentPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Admin is the admin endpoint of one pipeline. It samples the pipeline's
// counters once a second for /api/history until Close, or until every
// module of the pipeline has stopped.
type Admin struct {
	p    *router.Pipeline
	hist *history
	mux  *http.ServeMux
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// New returns the admin endpoint for p and starts its sampler.
func New(p *router.Pipeline) *Admin { return newAdmin(p, sampleEvery, historySize) }

func newAdmin(p *router.Pipeline, every time.Duration, keep int) *Admin {
	ctx, cancel := context.WithCancel(context.Background())
	a := &Admin{p: p, hist: newHistory(keep, every), mux: http.NewServeMux(), stop: cancel, done: make(chan struct{})}
	a.routes()
	go a.sample(ctx, every)
	return a
}

// Handler returns the admin routes for a pipeline. Its sampler ends by
// itself once the pipeline has stopped; use New to end it earlier.
func Handler(p *router.Pipeline) http.Handler { return New(p) }

// ServeHTTP serves the admin routes.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Close stops the sampler. The routes keep answering; the history stops
// growing.
func (a *Admin) Close() {
	a.once.Do(func() {
		a.stop()
		<-a.done
	})
}

func (a *Admin) routes() {
	p, mux := a.p, a.mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ready, waiting := p.Ready()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(waiting, ", "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.Status(), true)
	})
	// The event ring, oldest first. A poller passes the id of the last
	// event it has; an id from before a restart of ferry (ids start at 1
	// again) simply gets nothing newer, so the page also watches started.
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		after, err := afterParam(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		evs := p.Events(after)
		if evs == nil {
			evs = []connectors.Event{} // an empty array, never null
		}
		writeJSON(w, evs, true)
	})
	// Ten minutes of samples: compact, since nobody reads it by eye.
	mux.HandleFunc("GET /api/history", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.hist.snapshot(), false)
	})
	mux.HandleFunc("GET /api/graph", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, graphOf(p.Config()), true)
	})
	a.commissionRoutes()

	assets, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(assets)
	page := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", page)
	mux.Handle("GET /ui/", http.StripPrefix("/ui", http.HandlerFunc(page)))
}

// afterParam reads ?after=ID of /api/events: absent means every event kept.
func afterParam(r *http.Request) (uint64, error) {
	q := r.URL.Query()
	if !q.Has("after") {
		return 0, nil
	}
	v := q.Get("after")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad after %q: want the id of the last event seen, a whole number (0 for every event kept)", v)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, v any, indent bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v)
}

// Server is a running admin endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and serves h in the background. The bound address is
// logged, since ":0" picks a port.
func Listen(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin server stopped", "error", err)
		}
	}()
	logger.Info("admin listening", "addr", "http://"+ln.Addr().String())
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close shuts the server down, letting requests in flight finish.
func (s *Server) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }
