package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of a block of sequence numbers. The lower keeps an idle source
// from writing the bucket on every record; the upper bounds the gap a
// failover leaves.
const (
	minBlock = 64
	maxBlock = 1 << 20
)

// Term is one period during which this instance owns a key. Its context
// ends with the term.
type Term struct {
	seqs  jetstream.KeyValue
	key   string
	kvKey string
	hb    time.Duration
	// tag names this term in the sequence key's value, so that a
	// reservation whose reply was lost is recognised as its own.
	tag    string
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	have      bool   // a block has been reserved
	next, end uint64 // numbers [next, end) are reserved and not handed out
	rev       uint64 // revision of the sequence key this term last wrote
	// Numbers asked for in the current and the previous heartbeat-long
	// window, to size the next block.
	winStart  time.Time
	cur, prev uint64
	// The last failed reservation, so that callers queued behind it fail
	// with it instead of each waiting out a timeout of its own.
	failedAt time.Time
	failErr  error
}

func newTerm(ctx context.Context, cancel context.CancelCauseFunc, r *runner) *Term {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails
	return &Term{
		seqs:     r.e.seqs,
		key:      r.key,
		kvKey:    r.kvKey,
		hb:       r.e.cfg.Heartbeat,
		tag:      r.e.cfg.Instance + " " + hex.EncodeToString(nonce[:]),
		ctx:      ctx,
		cancel:   cancel,
		winStart: time.Now(),
	}
}

// Context ends when the term does: the lease was lost or given up.
func (t *Term) Context() context.Context { return t.ctx }

// Key is the key (source) the term owns.
func (t *Term) Key() string { return t.key }

// Reserve returns the first of n consecutive sequence numbers for the key,
// numbers no other term hands out. It is safe for concurrent use. Most
// calls take numbers from a block already reserved; the others write the
// bucket, waiting at most a heartbeat for it (two for a call queued behind
// another's write that succeeded). Once the term has ended,
// or another term has reserved numbers since this one's last block, it
// returns an error wrapping ErrFenced (and, in the second case, ends the
// term).
func (t *Term) Reserve(n int) (uint64, error) {
	if n < 1 {
		return 0, fmt.Errorf("lease %s: reserve %d sequence numbers: expected at least 1", t.key, n)
	}
	asked := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return 0, t.endedErr()
	}
	t.count(asked, uint64(n))
	if t.end-t.next < uint64(n) {
		if t.failErr != nil && t.failedAt.After(asked) {
			return 0, t.failErr
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.hb)
		defer cancel()
		if err := t.extend(ctx, uint64(n)); err != nil {
			t.failedAt, t.failErr = time.Now(), err
			return 0, err
		}
	}
	first := t.next
	t.next += uint64(n)
	return first, nil
}

func (t *Term) endedErr() error {
	cause := context.Cause(t.ctx)
	if errors.Is(cause, ErrFenced) {
		return fmt.Errorf("lease %s: %w", t.key, ErrFenced)
	}
	return fmt.Errorf("lease %s: term ended (%v): %w", t.key, cause, ErrFenced)
}

// reserveFirst reserves the term's first block, before work starts.
func (t *Term) reserveFirst(deadline time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx, cancel := context.WithDeadline(t.ctx, earliest(time.Now().Add(t.hb), deadline))
	defer cancel()
	return t.extend(ctx, 0)
}

// count records n numbers asked for.
func (t *Term) count(now time.Time, n uint64) {
	if el := now.Sub(t.winStart); el >= t.hb {
		t.prev = 0
		if el < 2*t.hb {
			t.prev = t.cur
		}
		t.cur = 0
		t.winStart = now
	}
	t.cur += n
}

// blockSize covers about two heartbeats of the recent rate: a busy source
// writes the bucket about once a heartbeat, and a failover loses at most
// the unused part of one block.
func (t *Term) blockSize() uint64 {
	return min(max(2*max(t.prev, t.cur), minBlock), maxBlock)
}

// extend reserves a block so that [next, end) holds at least n numbers.
// Called with mu held.
func (t *Term) extend(ctx context.Context, n uint64) error {
	size := max(t.blockSize(), n)
	for range 3 {
		if !t.have {
			ok, err := t.first(ctx, size)
			if err != nil || ok {
				return err
			}
			continue // written by another term in between; read it again
		}
		// The block continues this term's last one: the compare-and-set
		// proves nobody reserved in between.
		end := t.end + size
		rev, err := t.seqs.Update(ctx, t.kvKey, encodeSeq(end, t.tag), t.rev)
		if err == nil {
			t.end, t.rev = end, rev
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("lease %s: reserve sequence numbers: %w", t.key, err)
		}
		entry, err := t.seqs.Get(ctx, t.kvKey)
		holder := "nobody (the key was deleted)"
		switch {
		case err == nil:
			e, tag, derr := decodeSeq(entry.Value())
			if derr == nil && tag == t.tag && e >= t.end {
				// A reservation of this term whose reply was lost.
				t.end, t.rev = e, entry.Revision()
				if t.end-t.next >= n {
					return nil
				}
				continue
			}
			holder = strconv.Quote(tag)
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("lease %s: reserve sequence numbers: %w", t.key, err)
		}
		t.cancel(ErrFenced)
		return fmt.Errorf("lease %s: sequence numbers reserved by %s since this term's last block: %w", t.key, holder, ErrFenced)
	}
	return fmt.Errorf("lease %s: reserve sequence numbers: the sequence key kept changing under this term", t.key)
}

// first reserves the term's first block, right after the last block any
// term reserved. It reports false without error when another write came
// in between.
func (t *Term) first(ctx context.Context, size uint64) (bool, error) {
	entry, err := t.seqs.Get(ctx, t.kvKey)
	var start, rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// The first owner ever. Starting at the clock keeps numbers above
		// those of runs without leases, which number from the same clock.
		start = uint64(max(time.Now().UnixMicro(), 1))
		rev, err = t.seqs.Create(ctx, t.kvKey, encodeSeq(start+size, t.tag))
	case err != nil:
		return false, fmt.Errorf("lease %s: read the sequence high-water mark: %w", t.key, err)
	default:
		var derr error
		if start, _, derr = decodeSeq(entry.Value()); derr != nil {
			return false, fmt.Errorf("lease %s: sequence high-water mark: %w", t.key, derr)
		}
		rev, err = t.seqs.Update(ctx, t.kvKey, encodeSeq(start+size, t.tag), entry.Revision())
	}
	switch {
	case err == nil:
		t.have, t.next, t.end, t.rev = true, start, start+size, rev
		return true, nil
	case isConflict(err):
		return false, nil
	default:
		return false, fmt.Errorf("lease %s: reserve the first sequence numbers: %w", t.key, err)
	}
}

// encodeSeq is the sequence key's value: the end of the last block
// reserved, then the term that reserved it.
func encodeSeq(end uint64, tag string) []byte {
	return []byte(strconv.FormatUint(end, 10) + " " + tag)
}

func decodeSeq(b []byte) (end uint64, tag string, err error) {
	num, tag, _ := strings.Cut(string(b), " ")
	end, err = strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%q is not <end> <instance> <term>", b)
	}
	return end, tag, nil
}
