// Package burstlog rate-limits repeated log lines, so a device failing a
// thousand times a second costs one line a window, not a thousand. It is a
// leaf package so that the bus (the spool), the connectors and the router
// share one.
//
// Windows are fixed, not sliding: a sliding window that restarts on every
// event never closes while the events go on, and a device that fails every
// few seconds would then be logged once and never again.
package burstlog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultWindow is the window of a Burst or Limiter that sets none.
const DefaultWindow = 30 * time.Second

// Burst logs the first event of a window and counts the rest; the first
// event after the window logs again and says how many were suppressed in
// between.
type Burst struct {
	Quiet time.Duration // the window; default DefaultWindow

	mu         sync.Mutex
	start      time.Time // when the current window opened
	suppressed int
}

// Log logs msg at level unless the current window has logged already.
func (b *Burst) Log(l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	n, ok := b.admit(time.Now())
	if !ok {
		return
	}
	if n > 0 {
		attrs = append(attrs, slog.Int("suppressed_since_last", n))
	}
	l.LogAttrs(context.Background(), level, msg, attrs...)
}

// admit reports whether an event at now opens a new window, and how many
// events the window before suppressed.
func (b *Burst) admit(now time.Time) (int, bool) {
	window := b.Quiet
	if window <= 0 {
		window = DefaultWindow
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.start.IsZero() && now.Sub(b.start) < window {
		b.suppressed++
		return 0, false
	}
	n := b.suppressed
	b.start, b.suppressed = now, 0
	return n, true
}

// Reset closes the window: the next event logs at once. A state change
// (an outage that ended) calls it, so the next outage is news.
func (b *Burst) Reset() {
	b.mu.Lock()
	b.start, b.suppressed = time.Time{}, 0
	b.mu.Unlock()
}

// Limiter rate-limits per cause: each distinct cause logs at once, and
// repeats of one cause log at most once per window with their count. A new
// cause is never hidden behind an old one's window, so a device that fixed
// its certificate and now refuses the password is logged the moment it
// says so.
type Limiter struct {
	Window time.Duration // default DefaultWindow

	mu     sync.Mutex
	causes map[string]*Burst
	total  int // suppressed since the last Take
}

// maxCauses bounds the causes a Limiter remembers: error texts with ever
// new numbers in them must not grow it without end.
const maxCauses = 256

// Allow reports whether an event of cause should be logged now, with the
// count of its repeats suppressed since it last was.
func (l *Limiter) Allow(cause string) (suppressed int, ok bool) {
	key := Key(cause)
	l.mu.Lock()
	if l.causes == nil || len(l.causes) >= maxCauses {
		l.causes = map[string]*Burst{}
	}
	b := l.causes[key]
	if b == nil {
		b = &Burst{Quiet: l.Window}
		l.causes[key] = b
	}
	l.mu.Unlock()
	n, ok := b.admit(time.Now())
	if !ok {
		l.mu.Lock()
		l.total++
		l.mu.Unlock()
	}
	return n, ok
}

// Take returns how many events were suppressed since the last Take and
// starts every cause afresh, so that the next occurrence of any cause logs
// at once: a connector that came back up reports what it kept quiet about,
// and its next outage is news.
func (l *Limiter) Take() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.total
	l.total = 0
	l.causes = nil
	return n
}

// Key reduces an error text to its cause: runs of digits become one '#', so
// "read 10.0.0.7:502: i/o timeout after 3s" and the same after 4s are one
// cause, while "connection refused" and "bad password" are two.
func Key(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	digit := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !digit {
				b.WriteByte('#')
			}
			digit = true
			continue
		}
		digit = false
		b.WriteRune(r)
	}
	return b.String()
}
