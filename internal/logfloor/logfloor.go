// Package logfloor quiets a logger below a level, on derived loggers too:
// embedded servers (mochi) log every reset connection as a warning, which
// a gateway's log and test output do without.
package logfloor

import (
	"context"
	"log/slog"
)

// New returns l, dropping records below min.
func New(l *slog.Logger, min slog.Level) *slog.Logger {
	return slog.New(floor{l.Handler(), min})
}

type floor struct {
	slog.Handler
	min slog.Level
}

func (f floor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

// WithAttrs and WithGroup keep the floor on derived loggers (mochi derives
// one per listener).
func (f floor) WithAttrs(as []slog.Attr) slog.Handler {
	return floor{f.Handler.WithAttrs(as), f.min}
}

func (f floor) WithGroup(g string) slog.Handler {
	return floor{f.Handler.WithGroup(g), f.min}
}
