package connectors

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential back-off with jitter. Jitter matters on a plant
// network: fifty gateways that lost the same server must not all come back
// in the same millisecond.
type Backoff struct {
	Min, Max time.Duration // defaults 100ms and 30s
	attempt  int
}

// Next returns the wait before the next attempt: a random duration between
// half and all of Min·2^attempt, capped at Max.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo
	for i := 0; i < b.attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts returns how many waits Next has handed out since Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Sleep waits d or until ctx is done, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
