package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gopcua/opcua/ua"
)

// ErrNotificationGap is wrapped by every GapError.
var ErrNotificationGap = errors.New("notification messages lost")

// GapError reports NotificationMessages of a subscription that never
// arrived and could not be republished: the values they carried are
// missing between the ones emitted before and after.
type GapError struct {
	Subscription uint32
	From, To     uint32 // sequence numbers, inclusive
	Cause        error  // why Republish did not recover them
}

func (e *GapError) Error() string {
	seqs := fmt.Sprintf("sequence number %d", e.From)
	if e.To != e.From {
		seqs = fmt.Sprintf("sequence numbers %d-%d", e.From, e.To)
	}
	return fmt.Sprintf("subscription %d: %s lost, %d notification message(s): %v", e.Subscription, seqs, span(e.From, e.To), e.Cause)
}

// Unwrap returns ErrNotificationGap and the cause.
func (e *GapError) Unwrap() []error { return []error{ErrNotificationGap, e.Cause} }

// gapWait is how long a missing sequence number is waited for before it
// is asked for with Republish: responses overtake each other by
// microseconds in the client, so a couple of publishing intervals is
// ample, and a late message found after it is a duplicate of its
// republished copy (or, when it could not be republished, dropped so the
// order holds).
func gapWait(sub *subscription) time.Duration {
	return min(max(2*sub.interval, 100*time.Millisecond), 2*time.Second)
}

// maxRepublish bounds the numbers one run asks for; a longer run (a server
// that jumped its sequence) is reported as one gap.
const maxRepublish = 256

// armGapTimer sets t to the earliest moment a missing number is due.
func (s *session) armGapTimer(t *time.Timer) {
	var first time.Time
	for _, sub := range s.subs {
		if d := sub.order.due(gapWait(sub)); !d.IsZero() && (first.IsZero() || d.Before(first)) {
			first = d
		}
	}
	if first.IsZero() {
		t.Stop()
		return
	}
	t.Reset(max(time.Until(first), time.Millisecond))
}

// recoverGaps asks for the missing numbers of every subscription whose
// wait is over, emits what comes back and what it held behind it, in
// order, and reports what cannot be had as a gap.
func (s *session) recoverGaps(ctx context.Context, now time.Time) error {
	for _, sub := range s.subs {
		if d := sub.order.due(gapWait(sub)); d.IsZero() || d.After(now) {
			continue
		}
		if err := s.recoverSub(ctx, sub); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) recoverSub(ctx context.Context, sub *subscription) error {
	for {
		from, to, ok := sub.order.missing()
		if !ok {
			return nil
		}
		if span(from, to) > maxRepublish {
			s.gap(sub, from, to, fmt.Errorf("%d messages missing at once, more than the %d asked for with Republish", span(from, to), maxRepublish))
			if err := s.emitAll(ctx, sub, sub.order.skipTo(to, time.Now())); err != nil {
				return err
			}
			continue
		}
		// Ask for each in turn, emitting as soon as it is in order, and
		// report every run that could not be had before what follows it.
		var lostFrom uint32
		var cause, stop error
		lost := false
		for seq := from; ; seq = nextSeq(seq) {
			var msg *ua.NotificationMessage
			err := stop
			if err == nil {
				msg, err = s.republish(ctx, sub, seq)
			}
			if err != nil && fatal(err) {
				return fmt.Errorf("republish: %w", err)
			}
			if errors.Is(err, ua.StatusBadTimeout) || errors.Is(err, context.DeadlineExceeded) {
				// A server that does not answer is not asked for the rest
				// of the run: each call would hold up emission for the
				// whole call timeout.
				stop = err
			}
			var ready []*ua.NotificationMessage
			if err == nil {
				s.ack(sub.id, seq)
				s.o.st.republished.Add(1)
				s.o.m.republished.Inc()
				if lost {
					s.gap(sub, lostFrom, prevSeq(seq), cause)
					lost = false
				}
				ready, _ = sub.order.add(msg, time.Now())
			} else {
				if !lost {
					lost, lostFrom = true, seq
				}
				cause = err
				ready = sub.order.skip(time.Now())
				if len(ready) > 0 || seq == to {
					s.gap(sub, lostFrom, seq, cause)
					lost = false
				}
			}
			if err := s.emitAll(ctx, sub, ready); err != nil {
				return err
			}
			if seq == to {
				break
			}
		}
	}
}

// republish asks the server for one NotificationMessage again.
func (s *session) republish(ctx context.Context, sub *subscription, seq uint32) (*ua.NotificationMessage, error) {
	if s.noRepublish != nil {
		return nil, s.noRepublish
	}
	res, err := call[*ua.RepublishResponse](ctx, s, &ua.RepublishRequest{SubscriptionID: sub.id, RetransmitSequenceNumber: seq})
	switch {
	case errors.Is(err, ua.StatusBadServiceUnsupported):
		// Said once; every later gap of this session is counted without
		// asking again.
		s.noRepublish = fmt.Errorf("the server does not support Republish: %w", err)
		s.o.env.Logger.Warn("the server does not support Republish: lost notification messages are counted as gaps", "endpoint", s.o.Endpoint)
		return nil, s.noRepublish
	case err != nil:
		return nil, fmt.Errorf("republish %d: %w", seq, err)
	case res.NotificationMessage == nil || res.NotificationMessage.SequenceNumber != seq:
		return nil, fmt.Errorf("republish %d: the server answered with another message", seq)
	}
	return res.NotificationMessage, nil
}

// gap counts and reports sequence numbers that are lost for good.
func (s *session) gap(sub *subscription, from, to uint32, cause error) {
	n := span(from, to)
	s.o.st.gaps.Add(n)
	s.o.m.gaps.Add(float64(n))
	s.o.env.Error(&GapError{Subscription: sub.id, From: from, To: to, Cause: cause})
}

func (s *session) emitAll(ctx context.Context, sub *subscription, msgs []*ua.NotificationMessage) error {
	for _, m := range msgs {
		if err := s.emitMessage(ctx, sub, m); err != nil {
			return err
		}
	}
	return nil
}

// flushOrder emits everything a subscription holds, in order, reporting
// what is missing as gaps without asking for it: the subscription is
// about to go (watchdog rebuild, session failure).
func (s *session) flushOrder(ctx context.Context, sub *subscription, cause error) {
	ready, gaps := sub.order.flush(time.Now())
	if cause == nil {
		cause = errors.New("the subscription was replaced")
	}
	for _, g := range gaps {
		s.gap(sub, g[0], g[1], cause)
	}
	if len(ready) > 0 {
		s.o.logBurst("emitting held notification messages before the subscription goes", slog.Uint64("subscription", uint64(sub.id)), slog.Int("messages", len(ready)))
		_ = s.emitAll(ctx, sub, ready)
	}
}
