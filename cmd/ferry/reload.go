package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
)

// reloader re-reads the config file and applies it to the running pipeline;
// an invalid file leaves the old pipeline running and says why.
type reloader struct {
	file     string
	p        *router.Pipeline
	logger   *slog.Logger
	override func(*router.Config)
	// applied, when set, sees each config the pipeline took.
	applied func(*router.Config)
}

func (r *reloader) reload(ctx context.Context) (*router.ReloadResult, []string) {
	if r.file == "" {
		errs := []string{"the embedded demo has no file to reload; run with -c FILE"}
		r.p.NoteReload(nil, errs)
		return nil, errs
	}
	nc, err := router.LoadFile(r.file)
	if err != nil {
		var ce conf.Errors
		var errs []string
		if errors.As(err, &ce) {
			for _, e := range ce {
				errs = append(errs, e.Error())
			}
		} else {
			errs = []string{err.Error()}
		}
		r.logger.Error("config reload refused; the running config stays", "file", r.file, "errors", len(errs), "first", errs[0])
		r.p.NoteReload(nil, errs)
		return nil, errs
	}
	logWarnings(r.logger, nc)
	r.override(nc)
	res, err := r.p.Reload(ctx, nc)
	if err != nil {
		// Nothing of it applied (the error names the step that failed):
		// no result to report.
		errs := []string{err.Error()}
		r.p.NoteReload(nil, errs)
		return nil, errs
	}
	r.p.NoteReload(&res, nil)
	if r.applied != nil {
		r.applied(nc)
	}
	return &res, nil
}

// logWarnings logs what `ferry validate` would warn of: the config runs as
// written, but an integrator reading the log at start sees it too.
func logWarnings(logger *slog.Logger, c *router.Config) {
	for _, w := range c.Warnings {
		logger.Warn("config warning", "at", w.String())
	}
}

// onSIGHUP reloads on every SIGHUP until ctx ends (systemctl reload).
func (r *reloader) onSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.logger.Info("SIGHUP: reloading", "file", r.file)
				r.reload(ctx)
			}
		}
	}()
}

// handler is POST /api/reload: 200 with what changed, or 400 with every
// problem of the new file.
func (r *reloader) handler(w http.ResponseWriter, req *http.Request) {
	res, errs := r.reload(req.Context())
	w.Header().Set("Content-Type", "application/json")
	if len(errs) > 0 {
		w.WriteHeader(http.StatusBadRequest)
	}
	_ = json.NewEncoder(w).Encode(struct {
		OK     bool                 `json:"ok"`
		Errors []string             `json:"errors,omitempty"`
		Result *router.ReloadResult `json:"result,omitempty"`
	}{len(errs) == 0, errs, res})
}
