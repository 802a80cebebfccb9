package opcua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
)

// A network blip ends the session's connection, not the server's session
// or its subscriptions: the server goes on numbering NotificationMessages
// and keeps the unacknowledged ones for Republish. What the lost session
// built is carried to the next one, which takes the subscriptions over
// with TransferSubscriptions and asks Republish for what went missing
// (through the same reorder as any gap), so a blip loses nothing. Only
// when the transfer fails are the subscriptions created again, and what
// could not be had is counted as a gap.

// carryTTL is how long a lost session's subscriptions are kept for the
// next one: the session timeout ferry asks for, after which the server has
// deleted them anyway.
const carryTTL = time.Minute

// carried is what a lost session leaves for the next one.
type carried struct {
	subs  []*subscription
	items []*item // by client handle, to check the next session resolved the same nodes
	at    time.Time
	cause error
}

// keep hands the session's subscriptions to the next session instead of
// reporting their gap now; the gap is reported if the transfer fails.
func (s *session) keep(cause error) {
	c := &carried{items: s.items, at: time.Now(), cause: cause}
	for _, sub := range s.subs {
		c.subs = append(c.subs, sub)
	}
	s.o.carry = c
	s.kept = true
}

// dropCarry gives up on the carried subscriptions: what they held is
// emitted, what they were missing is counted as gaps, and every item gets
// the BAD record of the outage.
func (o *OPCUA) dropCarry(ctx context.Context, why error) {
	c := o.carry
	if c == nil {
		return
	}
	o.carry = nil
	s := &session{o: o, items: c.items}
	for _, sub := range c.subs {
		s.flushOrder(ctx, sub, why)
	}
	s.reportGap(ctx, nil, ua.StatusBadNoCommunication)
}

// sameItems reports whether two sessions resolved the same nodes under the
// same client handles: the transferred monitored items keep theirs.
func sameItems(a, b []*item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].tag != b[i].tag || a[i].handle != b[i].handle || a[i].node.String() != b[i].node.String() {
			return false
		}
	}
	return true
}

// takeOver transfers the carried subscriptions to this session. handled
// is false when there was nothing to take over (create as usual);
// otherwise every carried subscription is in s.subs, transferred or
// created again.
func (s *session) takeOver(ctx context.Context) (bad []badItem, handled bool, err error) {
	c := s.o.carry
	if c == nil {
		return nil, false, nil
	}
	if !sameItems(c.items, s.items) {
		s.o.dropCarry(ctx, errors.New("the nodes resolved differently after the reconnect; subscriptions created again"))
		return nil, false, nil
	}
	s.o.carry = nil
	ids := make([]uint32, len(c.subs))
	for i, sub := range c.subs {
		ids[i] = sub.id
	}
	res, terr := call[*ua.TransferSubscriptionsResponse](ctx, s, &ua.TransferSubscriptionsRequest{SubscriptionIDs: ids, SendInitialValues: false})
	if terr == nil && len(res.Results) != len(ids) {
		terr = fmt.Errorf("%d results for %d subscriptions", len(res.Results), len(ids))
	}
	if terr != nil && fatal(terr) {
		// This session is lost too; the next one tries again.
		s.o.carry = c
		return nil, true, fmt.Errorf("transfer subscriptions: %w", terr)
	}
	now := time.Now()
	var moved, failed int
	var lastCause error
	for i, sub := range c.subs {
		cause := terr
		if cause == nil && res.Results[i] != nil && res.Results[i].StatusCode != ua.StatusOK {
			cause = res.Results[i].StatusCode
		}
		if cause == nil && res.Results[i] == nil {
			cause = errors.New("no result")
		}
		if cause == nil {
			sub.items = s.remap(sub.items)
			sub.lastSeen, sub.strikes = now, 0
			// Numbers below next were received but maybe never
			// acknowledged: acknowledge them, or they fill the server's
			// retransmission queue. The others are what went missing in
			// the blip, asked for with Republish once gapWait is over.
			for _, seq := range res.Results[i].AvailableSequenceNumbers {
				if seq != 0 && after(sub.order.next, seq) {
					s.ack(sub.id, seq)
				}
			}
			sub.order.available(res.Results[i].AvailableSequenceNumbers, now)
			s.subs[sub.id] = sub
			moved++
			continue
		}
		failed++
		lastCause = cause
		why := fmt.Errorf("transfer subscriptions: %w", cause)
		s.flushOrder(ctx, sub, why)
		s.reportGap(ctx, sub, ua.StatusBadNoCommunication)
		fresh, b, err := s.createSubscription(ctx, s.remap(sub.items), sub.events)
		if err != nil {
			return nil, true, err
		}
		s.subs[fresh.id] = fresh
		bad = append(bad, b...)
	}
	s.o.st.transferred.Add(uint64(moved))
	s.o.st.transferFailed.Add(uint64(failed))
	s.o.m.transferred.Add(float64(moved))
	attrs := []any{"transferred", moved, "created_again", failed, "offline", now.Sub(c.at).Round(time.Millisecond)}
	if lastCause != nil {
		attrs = append(attrs, "error", lastCause.Error())
		s.o.env.Logger.Warn("subscriptions not transferred: created again, their gap counted", attrs...)
	} else {
		s.o.env.Logger.Info("subscriptions transferred to the new session", attrs...)
	}
	return bad, true, nil
}

// remap points items of the lost session at this session's items with the
// same handles (sameItems checked they match).
func (s *session) remap(old []*item) []*item {
	out := make([]*item, 0, len(old))
	for _, it := range old {
		if h := int(it.handle); h >= 1 && h <= len(s.items) {
			out = append(out, s.items[h-1])
		}
	}
	return out
}
