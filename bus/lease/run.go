package lease

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-gateway/ferry/internal/burstlog"
)

// Why a term ends: the values of ferry_lease_lost_total's reason label.
const (
	reasonRefused  = "refused"  // a renewal found the key written by another instance
	reasonExpired  = "expired"  // no renewal succeeded in time: the owner fenced itself
	reasonFenced   = "fenced"   // a reservation found the sequence key written by another term
	reasonShutdown = "shutdown" // Run's context ended
	reasonReleased = "released" // work returned on its own
)

var reasons = []string{reasonRefused, reasonExpired, reasonFenced, reasonShutdown, reasonReleased}

// Causes of a term's context, as context.Cause reports them to work.
var (
	errRefused  = errors.New("lease renewal refused: another instance holds the lease")
	errExpired  = errors.New("no lease renewal succeeded within lease - heartbeat: self-fenced")
	errReleased = errors.New("work returned")
)

// runner is one Run: the campaign for one key and its terms. Its methods
// run on Run's goroutine only.
type runner struct {
	e     *Elector
	key   string // as the caller names it: metrics, logs, Status
	kvKey string // as stored in the buckets
	st    *keyState
	log   *slog.Logger
	work  func(context.Context, *Term)

	burst    *burstlog.Burst // failed bus calls, logged once per burst
	failures int             // failed calls since the last success
}

func (r *runner) run(ctx context.Context) {
	r.burst = &burstlog.Burst{}
	for {
		if rev, sent, ok := r.campaign(ctx); ok {
			r.lead(ctx, rev, sent)
		}
		// Waiting a heartbeat after a term, too, gives the standbys the first
		// go at a key this instance has just released.
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.e.cfg.Heartbeat):
		}
	}
}

// campaign tries once to create the key. When another instance holds it,
// it records which one, for Status.
func (r *runner) campaign(ctx context.Context) (rev uint64, sent time.Time, ok bool) {
	e := r.e
	opCtx, cancel := context.WithTimeout(ctx, e.cfg.Heartbeat)
	defer cancel()
	sent = time.Now()
	rev, err := e.leases.Create(opCtx, r.kvKey, []byte(e.cfg.Instance))
	switch {
	case err == nil:
		r.succeeded()
		return rev, sent, true
	case ctx.Err() != nil:
		return 0, time.Time{}, false
	case !isConflict(err):
		r.setOwner("") // unknown while the bus is away
		r.failed("campaign", err)
		return 0, time.Time{}, false
	}
	r.succeeded()
	getCtx, cancelGet := context.WithTimeout(ctx, e.cfg.Heartbeat)
	defer cancelGet()
	entry, err := e.leases.Get(getCtx, r.kvKey)
	switch {
	case err == nil:
		r.setOwner(string(entry.Value()))
	case errors.Is(err, jetstream.ErrKeyNotFound):
		r.setOwner("") // it expired since the Create; the next campaign takes it
	case ctx.Err() == nil:
		r.failed("read the lease's owner", err)
	}
	return 0, time.Time{}, false
}

// leaseState is the owner's view of its lease during a term.
type leaseState struct {
	rev      uint64    // revision of the key this owner last wrote
	deadline time.Time // when the owner must consider the lease lost
}

// lead runs one term: the first sequence block, work, renewals, and the
// end of the term. It returns once work has returned.
func (r *runner) lead(ctx context.Context, rev uint64, sent time.Time) {
	e := r.e
	termCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := newTerm(termCtx, cancel, r)
	r.acquired(rev)

	// The server stamps the write no earlier than it was sent, and keeps the
	// key Lease after the stamp: stopping a heartbeat before that leaves
	// work a heartbeat to return before any standby can take over.
	l := leaseState{rev: rev, deadline: sent.Add(e.cfg.Lease - e.cfg.Heartbeat)}
	fence := time.NewTimer(time.Until(l.deadline))
	defer fence.Stop()
	tick := time.NewTicker(e.cfg.Heartbeat)
	defer tick.Stop()

	var done chan struct{} // closed when work returns; nil until it starts
	reason := ""
	for reason == "" {
		if done == nil {
			// The first block moves the sequence key's revision, which fences
			// the previous owner's reservations before this one's work starts.
			if err := t.reserveFirst(l.deadline); err != nil {
				if termCtx.Err() == nil {
					r.failed("reserve the first block of sequence numbers", err)
				}
			} else {
				done = make(chan struct{})
				go func() {
					defer close(done)
					r.work(termCtx, t)
				}()
			}
		}
		select {
		case <-termCtx.Done():
			reason = reasonShutdown
			if errors.Is(context.Cause(termCtx), ErrFenced) {
				reason = reasonFenced
			}
		case <-fence.C:
			reason = reasonExpired
		case <-done:
			reason = reasonReleased
		case <-tick.C:
			if r.renew(termCtx, &l, fence) {
				reason = reasonRefused
			}
		}
	}

	switch reason {
	case reasonRefused:
		cancel(errRefused)
	case reasonExpired:
		cancel(errExpired)
	case reasonReleased:
		cancel(errReleased)
	}
	if done != nil {
		r.drain(ctx, done, reason, &l, fence, tick)
	}
	if reason != reasonRefused {
		r.release(ctx, l.rev, reason)
	}
	r.lost(reason)
}

// drain waits for work to return after its term's context ended. An owner
// that is stopping keeps renewing meanwhile, since the source may still be
// polled until work returns; after any other end the lease is already lost.
func (r *runner) drain(ctx context.Context, done <-chan struct{}, reason string, l *leaseState, fence *time.Timer, tick *time.Ticker) {
	renewing := reason == reasonShutdown
	bg := context.WithoutCancel(ctx)
	slow := time.NewTimer(r.e.cfg.Heartbeat)
	defer slow.Stop()
	for {
		select {
		case <-done:
			return
		case <-slow.C:
			r.log.Warn("lease: work still running a heartbeat after its term ended; another instance may take the source over before it returns",
				"reason", reason, "heartbeat", r.e.cfg.Heartbeat)
		case <-fence.C:
			renewing = false
		case <-tick.C:
			if renewing && r.renew(bg, l, fence) {
				renewing = false
			}
		}
	}
}

// renew extends the lease once. It reports whether the lease is lost to
// another instance; a failure to reach the server is not a loss: the fence
// timer decides when too many have failed.
func (r *runner) renew(ctx context.Context, l *leaseState, fence *time.Timer) (refused bool) {
	e := r.e
	now := time.Now()
	if !now.Before(l.deadline) {
		return false // the fence timer ends the term
	}
	// A renewal answered after the deadline is no use: the term has ended.
	opCtx, cancel := context.WithDeadline(ctx, earliest(now.Add(e.cfg.Heartbeat), l.deadline))
	defer cancel()
	rev, err := e.leases.Update(opCtx, r.kvKey, []byte(e.cfg.Instance), l.rev)
	if err == nil {
		l.rev = rev
		l.deadline = now.Add(e.cfg.Lease - e.cfg.Heartbeat)
		fence.Reset(time.Until(l.deadline))
		r.succeeded()
		return false
	}
	if ctx.Err() != nil {
		return false
	}
	if !isConflict(err) {
		e.m.renewErrors.WithLabelValues(r.key).Inc()
		r.failed("renew the lease", err)
		return false
	}
	// The revision moved. Only the holder of the current revision can
	// write the key, and a standby only creates it once it is gone, which
	// the deadline rules out; so this instance's own name there is a
	// renewal of its own whose reply was lost (a timeout, a reconnect). Its
	// send time is unknown, so the deadline stays where it was.
	entry, err := e.leases.Get(opCtx, r.kvKey)
	switch {
	case err == nil && string(entry.Value()) == e.cfg.Instance:
		l.rev = entry.Revision()
		r.succeeded()
		return false
	case err == nil:
		r.setOwner(string(entry.Value()))
		return true
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return true // deleted by hand: give the source up like any lost lease
	default:
		e.m.renewErrors.WithLabelValues(r.key).Inc()
		r.failed("read the lease after a refused renewal", err)
		return false
	}
}

// release deletes the key if it is still at the revision this owner last
// wrote, so that a standby need not wait for it to expire.
func (r *runner) release(ctx context.Context, rev uint64, reason string) {
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.e.cfg.Heartbeat)
	defer cancel()
	err := r.e.leases.Delete(opCtx, r.kvKey, jetstream.LastRevision(rev))
	switch {
	case err == nil:
		r.log.Debug("lease released", "revision", rev)
	case isConflict(err):
		// Another owner by now, or a renewal of ours whose reply was lost:
		// the key then expires Lease after that write.
	case reason == reasonShutdown || reason == reasonReleased:
		r.log.Warn("lease: could not release the lease; a standby takes over when it expires",
			"lease", r.e.cfg.Lease, "error", err)
	}
}

func (r *runner) acquired(rev uint64) {
	e := r.e
	e.mu.Lock()
	r.st.owner = e.cfg.Instance
	r.st.mine = true
	r.st.since = time.Now()
	r.st.takeovers++
	e.mu.Unlock()
	e.m.owner.WithLabelValues(r.key).Set(1)
	e.m.acquired.WithLabelValues(r.key).Inc()
	r.log.Info("lease acquired: this instance runs the source", "revision", rev)
}

func (r *runner) lost(reason string) {
	e := r.e
	e.mu.Lock()
	r.st.mine = false
	r.st.since = time.Time{}
	if r.st.owner == e.cfg.Instance {
		r.st.owner = ""
	}
	e.mu.Unlock()
	e.m.owner.WithLabelValues(r.key).Set(0)
	e.m.lost.WithLabelValues(r.key, reason).Inc()
	level := slog.LevelWarn
	if reason == reasonShutdown || reason == reasonReleased {
		level = slog.LevelInfo
	}
	r.log.Log(context.Background(), level, "lease given up: this instance no longer runs the source", "reason", reason)
}

// setOwner records who holds the key, as a standby sees it.
func (r *runner) setOwner(owner string) {
	e := r.e
	e.mu.Lock()
	changed := r.st.owner != owner
	r.st.owner = owner
	e.mu.Unlock()
	if changed && owner != "" && owner != e.cfg.Instance {
		r.log.Info("lease held by another instance", "owner", owner)
	}
}

func (r *runner) failed(op string, err error) {
	r.failures++
	r.burst.Log(r.log, slog.LevelWarn, "lease: "+op+" failed; retrying every heartbeat", slog.Any("error", err))
}

func (r *runner) succeeded() {
	if r.failures == 0 {
		return
	}
	r.log.Info("lease: bus calls succeed again", "failed_calls", r.failures)
	r.failures = 0
	r.burst = &burstlog.Burst{} // the next outage is a new burst, logged at once
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
