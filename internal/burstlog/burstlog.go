// Package burstlog logs the first event of a burst and counts the rest, so a
// device failing a thousand times a second costs one log line. It is a leaf
// package so that the bus (the spool) and the connectors share one.
package burstlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Burst logs the first event of a burst and counts the rest, so a device
// that fails a thousand times a second costs one log line, not a thousand.
// A burst ends after Quiet without events; the next event logs again and
// says how many were suppressed in between.
type Burst struct {
	Quiet time.Duration // default 30s

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Log logs msg at level unless a burst is in progress.
func (b *Burst) Log(l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	quiet := b.Quiet
	if quiet == 0 {
		quiet = 30 * time.Second
	}
	now := time.Now()
	b.mu.Lock()
	inBurst := !b.last.IsZero() && now.Sub(b.last) < quiet
	b.last = now
	if inBurst {
		b.suppressed++
		b.mu.Unlock()
		return
	}
	n := b.suppressed
	b.suppressed = 0
	b.mu.Unlock()
	if n > 0 {
		attrs = append(attrs, slog.Int("suppressed_since_last", n))
	}
	l.LogAttrs(context.Background(), level, msg, attrs...)
}
