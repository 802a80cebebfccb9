package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
)

func slogString(k, v string) slog.Attr { return slog.String(k, v) }

// subscription is one server subscription and its items.
type subscription struct {
	id        uint32
	items     []*item
	interval  time.Duration // revised
	keepalive uint32        // revised
	timeout   time.Duration // watchdog
	created   int           // monitored items created
	lastSeen  time.Time     // last publish response (data or keep-alive)
	strikes   int           // watchdog rebuilds without a response in between
	order     *reorder      // its NotificationMessages back in sequence order
	events    bool          // it holds the event items
}

// subscribe creates the subscriptions, keeps Publish requests outstanding
// and turns every publish response into one batch, until the session
// fails. The watchdog rebuilds a subscription that falls silent.
func (s *session) subscribe(ctx context.Context) error {
	per := s.o.Subscription.MaxItemsPerSubscription
	bad, tookOver, err := s.takeOver(ctx)
	if err != nil {
		return err
	}
	// The event items go into the first subscription (one of their own
	// when there are no data items).
	events := len(s.o.Events) > 0 && !tookOver
	for start := 0; !tookOver && (start < len(s.items) || events); start += per {
		sub, b, err := s.createSubscription(ctx, s.items[min(start, len(s.items)):min(start+per, len(s.items))], events)
		if err != nil {
			return err
		}
		events = false
		s.subs[sub.id] = sub
		bad = append(bad, b...)
	}
	s.countSubs()
	s.o.st.bad.Add(int64(len(bad)))
	if len(bad) > 0 {
		s.emitBad(ctx, bad)
	}
	s.o.env.Up()
	s.o.env.Logger.Info("subscribed", "items", len(s.items)-len(bad), "refused", len(bad), "subscriptions", len(s.subs))

	n := s.o.Subscription.PublishRequests
	if n == 0 {
		n = min(len(s.subs)+1, 20)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resCh := make(chan *ua.PublishResponse, n)
	errCh := make(chan error, n)
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			s.publishLoop(pctx, resCh, errCh)
		}()
	}
	defer func() {
		cancel()
		for range n {
			<-done
		}
	}()
	tick := time.NewTicker(s.watchdogTick())
	defer tick.Stop()
	// gapT fires when a missing sequence number has been waited for long
	// enough; it is re-armed after every response.
	gapT := time.NewTimer(time.Hour)
	gapT.Stop()
	defer gapT.Stop()
	// Transferred subscriptions may be missing messages already.
	s.armGapTimer(gapT)
	browseC, stopBrowse := s.browseTicker()
	defer stopBrowse()
	err = func() error {
		for {
			select {
			case res := <-resCh:
				if len(resCh) > 0 {
					s.backlogAt = time.Now()
				}
				start := time.Now()
				if err := s.handle(ctx, res); err != nil {
					return err
				}
				if d := time.Since(start); d > s.o.Subscription.PublishingInterval.D() {
					s.backlogAt = time.Now()
				}
				s.armGapTimer(gapT)
			case err := <-errCh:
				return err
			case <-gapT.C:
				// A response still queued may be the missing one: a paused
				// process or a blocked emitter let the wait run out while
				// it sat here. Handling it re-arms the timer.
				if len(resCh) > 0 {
					continue
				}
				if err := s.recoverGaps(ctx, time.Now()); err != nil {
					return err
				}
				s.armGapTimer(gapT)
			case <-browseC:
				if err := s.rescan(ctx); err != nil {
					return err
				}
				// Responses waited while it browsed: not silence.
				s.backlogAt = time.Now()
				s.armGapTimer(gapT)
			case <-tick.C:
				if len(resCh) > 0 {
					continue
				}
				if err := s.watchdog(ctx); err != nil {
					return err
				}
				s.armGapTimer(gapT)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}()
	if ctx.Err() == nil && fatal(err) && len(s.subs) > 0 {
		// The connection or session is gone, perhaps not the server's
		// subscriptions: the next session tries to take them over, with
		// what they hold and miss.
		s.keep(err)
		return err
	}
	if ctx.Err() == nil {
		// What arrived is emitted in order before the session goes; the
		// rest is covered by the BAD records of the session gap.
		for _, sub := range s.subs {
			s.flushOrder(ctx, sub, err)
		}
	}
	return err
}

func (s *session) watchdogTick() time.Duration {
	d := s.o.Subscription.Watchdog.D() / 4
	return min(max(d, 10*time.Millisecond), time.Second)
}

func (s *session) countSubs() {
	items := 0
	for _, sub := range s.subs {
		items += sub.created
	}
	s.o.st.subs.Store(int64(len(s.subs)))
	s.o.st.items.Store(int64(items))
}

// createSubscription creates one subscription and its monitored items in
// calls of at most the server's MaxMonitoredItemsPerCall.
func (s *session) createSubscription(ctx context.Context, items []*item, events bool) (*subscription, []badItem, error) {
	cfg := s.o.Subscription
	res, err := call[*ua.CreateSubscriptionResponse](ctx, s, &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(cfg.PublishingInterval.D()) / float64(time.Millisecond),
		RequestedLifetimeCount:      cfg.LifetimeCount,
		RequestedMaxKeepAliveCount:  cfg.KeepaliveCount,
		PublishingEnabled:           true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create subscription: %w", err)
	}
	sub := &subscription{
		id:        res.SubscriptionID,
		items:     items,
		interval:  time.Duration(res.RevisedPublishingInterval * float64(time.Millisecond)),
		keepalive: res.RevisedMaxKeepAliveCount,
		lastSeen:  time.Now(),
		order:     newReorder(),
	}
	if sub.interval <= 0 {
		sub.interval = cfg.PublishingInterval.D()
	}
	if sub.keepalive == 0 {
		sub.keepalive = cfg.KeepaliveCount
	}
	// Never shorter than a keep-alive period and two intervals, whatever
	// the server revised.
	sub.timeout = max(cfg.Watchdog.D(), sub.interval*time.Duration(sub.keepalive+2))
	if _, dup := s.subs[sub.id]; dup {
		return nil, nil, fmt.Errorf("create subscription: the server reused live subscription id %d", sub.id)
	}
	bad, err := s.createItems(ctx, sub, items, true)
	if err == nil && events {
		err = s.createEventItems(ctx, sub)
	}
	if err != nil {
		s.deleteSubscriptions(ctx, sub.id)
		return nil, nil, err
	}
	return sub, bad, nil
}

// monitoring builds the monitored item parameters from the config.
func (s *session) monitoring(it *item, filter bool) *ua.MonitoredItemCreateRequest {
	cfg := s.o.Subscription
	sampling := -1.0
	if cfg.SamplingInterval != nil {
		sampling = float64(cfg.SamplingInterval.D()) / float64(time.Millisecond)
	}
	queue, discard, trigger, deadband := cfg.QueueSize, *cfg.DiscardOldest, cfg.Trigger, cfg.Deadband
	if m := it.mon; m != nil {
		// The node's own settings win over the subscription's, one by one.
		if m.SamplingInterval != nil {
			sampling = float64(m.SamplingInterval.D()) / float64(time.Millisecond)
		}
		if m.QueueSize != nil {
			queue = *m.QueueSize
		}
		if m.DiscardOldest != nil {
			discard = *m.DiscardOldest
		}
		if m.Trigger != "" {
			trigger = m.Trigger
		}
		if m.Deadband != nil {
			deadband = *m.Deadband
		}
	}
	p := &ua.MonitoringParameters{
		ClientHandle:     it.handle,
		SamplingInterval: sampling,
		QueueSize:        queue,
		DiscardOldest:    discard,
		Filter:           ua.NewExtensionObject(nil),
	}
	if filter && (trigger != "status_value" || deadband.Type != "none") {
		f := &ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue}
		switch trigger {
		case "status":
			f.Trigger = ua.DataChangeTriggerStatus
		case "status_value_timestamp":
			f.Trigger = ua.DataChangeTriggerStatusValueTimestamp
		}
		switch deadband.Type {
		case "absolute":
			f.DeadbandType, f.DeadbandValue = uint32(ua.DeadbandTypeAbsolute), deadband.Value
		case "percent":
			f.DeadbandType, f.DeadbandValue = uint32(ua.DeadbandTypePercent), deadband.Value
		}
		p.Filter = ua.NewExtensionObject(f)
	}
	return &ua.MonitoredItemCreateRequest{
		ItemToMonitor:       &ua.ReadValueID{NodeID: it.node, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		MonitoringMode:      ua.MonitoringModeReporting,
		RequestedParameters: p,
	}
}

// createItems creates monitored items; items the server refuses come back
// as bad items, except that items refused only for their filter (a
// deadband on a string, say) are created again without it.
func (s *session) createItems(ctx context.Context, sub *subscription, items []*item, filter bool) ([]badItem, error) {
	per := chunk(s.limits.maxItemsPerCall, s.o.Subscription.MaxItemsPerCall)
	var bad []badItem
	var retry []*item
	for start := 0; start < len(items); start += per {
		part := items[start:min(start+per, len(items))]
		req := &ua.CreateMonitoredItemsRequest{SubscriptionID: sub.id, TimestampsToReturn: ua.TimestampsToReturnBoth}
		for _, it := range part {
			req.ItemsToCreate = append(req.ItemsToCreate, s.monitoring(it, filter))
		}
		res, err := call[*ua.CreateMonitoredItemsResponse](ctx, s, req)
		if err != nil {
			return nil, fmt.Errorf("create monitored items: %w", err)
		}
		if len(res.Results) != len(part) {
			return nil, fmt.Errorf("create monitored items: %d results for %d items", len(res.Results), len(part))
		}
		for i, r := range res.Results {
			switch {
			case r.StatusCode == ua.StatusOK || Quality(r.StatusCode) != bus.Bad:
				sub.created++
			case filter && (r.StatusCode == ua.StatusBadFilterNotAllowed || r.StatusCode == ua.StatusBadMonitoredItemFilterUnsupported):
				retry = append(retry, part[i])
			default:
				bad = append(bad, badItem{tag: part[i].tag, unit: part[i].unit, node: part[i].node.String(), code: r.StatusCode})
			}
		}
	}
	if len(retry) > 0 {
		more, err := s.createItems(ctx, sub, retry, false)
		if err != nil {
			return nil, err
		}
		bad = append(bad, more...)
	}
	return bad, nil
}

func (s *session) deleteSubscriptions(ctx context.Context, ids ...uint32) {
	_, _ = call[*ua.DeleteSubscriptionsResponse](ctx, s, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: ids})
}

// publishLoop keeps one Publish request outstanding and hands each
// response to the serve goroutine. Several run side by side, so the server
// always holds a request to answer with.
func (s *session) publishLoop(ctx context.Context, out chan<- *ua.PublishResponse, errs chan<- error) {
	for ctx.Err() == nil {
		req := &ua.PublishRequest{SubscriptionAcknowledgements: s.takeAcks()}
		var res *ua.PublishResponse
		s.o.m.outstanding.Inc()
		s.o.st.outstanding.Add(1)
		err := s.c.Send(ctx, req, func(v ua.Response) error {
			r, ok := v.(*ua.PublishResponse)
			if !ok {
				return fmt.Errorf("unexpected response %T to a Publish request", v)
			}
			res = r
			return nil
		})
		s.o.m.outstanding.Dec()
		s.o.st.outstanding.Add(-1)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			select {
			case out <- res:
			case <-ctx.Done():
				return
			}
		case errors.Is(err, ua.StatusBadTimeout), errors.Is(err, ua.StatusBadNoSubscription),
			errors.Is(err, ua.StatusBadTooManyPublishRequests), errors.Is(err, ua.StatusBadSubscriptionIDInvalid):
			// Nothing to publish now, or a request too many: the watchdog
			// judges whether subscriptions are alive.
			t := time.NewTimer(min(s.o.Subscription.PublishingInterval.D(), time.Second))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		default:
			select {
			case errs <- fmt.Errorf("publish: %w", err):
			default:
			}
			return
		}
	}
}

func (s *session) takeAcks() []*ua.SubscriptionAcknowledgement {
	s.acksMu.Lock()
	defer s.acksMu.Unlock()
	a := s.acks
	s.acks = nil
	if a == nil {
		a = []*ua.SubscriptionAcknowledgement{}
	}
	return a
}

func (s *session) ack(sub, seq uint32) {
	s.acksMu.Lock()
	s.acks = append(s.acks, &ua.SubscriptionAcknowledgement{SubscriptionID: sub, SequenceNumber: seq})
	s.acksMu.Unlock()
}

// handle takes one publish response: a keep-alive or a data message goes
// through its subscription's reorder, and whatever is then in sequence is
// emitted, one batch per NotificationMessage.
func (s *session) handle(ctx context.Context, res *ua.PublishResponse) error {
	now := time.Now()
	sub := s.subs[res.SubscriptionID]
	if sub != nil {
		sub.lastSeen = now
		sub.strikes = 0
	}
	msg := res.NotificationMessage
	if msg == nil || len(msg.NotificationData) == 0 {
		s.o.st.keepAlives.Add(1)
		if sub != nil && msg != nil {
			sub.order.keepAlive(msg.SequenceNumber, now)
			sub.order.available(res.AvailableSequenceNumbers, now)
		}
		return nil
	}
	s.ack(res.SubscriptionID, msg.SequenceNumber)
	if sub == nil {
		// A subscription this session no longer has (deleted by the
		// watchdog): nothing to order it against.
		return s.emitMessage(ctx, nil, msg)
	}
	// AvailableSequenceNumbers usually lists this very message (it is
	// kept until acknowledged), so it is read after the message is in.
	if sub.order.take(msg) {
		sub.order.available(res.AvailableSequenceNumbers, now)
		return s.emitMessage(ctx, sub, msg)
	}
	ready, dup := sub.order.add(msg, now)
	sub.order.available(res.AvailableSequenceNumbers, now)
	if dup {
		s.o.st.duplicates.Add(1)
		return nil
	}
	if len(ready) == 0 {
		s.o.st.reordered.Add(1)
	}
	return s.emitAll(ctx, sub, ready)
}

// emitMessage turns one NotificationMessage into one batch.
func (s *session) emitMessage(ctx context.Context, sub *subscription, msg *ua.NotificationMessage) error {
	now := time.Now()
	b := &s.batch
	b.Reset()
	ingest := now.UnixNano()
	for _, eo := range msg.NotificationData {
		if eo == nil {
			continue
		}
		switch d := eo.Value.(type) {
		case *ua.DataChangeNotification:
			for _, mi := range d.MonitoredItems {
				h := int(mi.ClientHandle)
				if h < 1 || h > len(s.items) {
					continue
				}
				b.Records = append(b.Records, s.record(s.items[h-1], mi.Value, ingest))
			}
		case *ua.EventNotificationList:
			for _, fl := range d.Events {
				if fl == nil || fl.ClientHandle < eventHandleBase {
					continue
				}
				if r, ok := s.eventRecord(fl, ingest); ok {
					b.Records = append(b.Records, r)
				}
			}
		case *ua.StatusChangeNotification:
			if Quality(d.Status) == bus.Bad && sub != nil {
				// The server ended the subscription (lifetime expired):
				// let the watchdog rebuild it now.
				s.o.logBurst("subscription ended by the server", slog.Uint64("subscription", uint64(sub.id)), slog.String("status", statusName(d.Status)))
				sub.lastSeen = time.Time{}
			}
		}
	}
	n := uint64(len(b.Records))
	s.o.st.responses.Add(1)
	s.o.st.notifs.Add(n)
	s.o.m.responses.Inc()
	s.o.m.notifs.Add(float64(n))
	for {
		m := s.o.st.maxN.Load()
		if n <= m || s.o.st.maxN.CompareAndSwap(m, n) {
			break
		}
	}
	if n == 0 {
		return nil
	}
	if err := s.o.env.Emit(ctx, b); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.o.env.Error(err)
		return nil
	}
	s.delivered.Store(true)
	return nil
}

// record builds one record from a data value. The attrs map for the
// server timestamp is shared by the records with the same timestamp (a
// server stamps a whole scan alike), so it costs one map per scan, not one
// per value.
func (s *session) record(it *item, dv *ua.DataValue, ingest int64) bus.Record {
	r := bus.Record{Device: s.o.device, Tag: it.tag, Unit: it.unit, IngestTime: ingest}
	if dv == nil {
		r.Quality, r.Status = bus.Bad, uint32(ua.StatusBadNoData)
		return r
	}
	if dv.EncodingMask&ua.DataValueStatusCode != 0 {
		r.Status = uint32(dv.Status)
		r.Quality = Quality(dv.Status)
	}
	r.Value = Value(dv.Value)
	switch {
	case !dv.SourceTimestamp.IsZero():
		r.SourceTime = dv.SourceTimestamp.UnixNano()
	case !dv.ServerTimestamp.IsZero():
		r.SourceTime = dv.ServerTimestamp.UnixNano()
	}
	if *s.o.ServerTimestamp && !dv.ServerTimestamp.IsZero() {
		ts := dv.ServerTimestamp.UnixNano()
		if ts != s.lastTS || s.lastAttr == nil {
			s.lastTS = ts
			s.lastAttr = map[string]string{"server_ts": dv.ServerTimestamp.UTC().Format(time.RFC3339Nano)}
		}
		r.Attrs = s.lastAttr
	}
	return r
}

// watchdog rebuilds every subscription that was silent (no data, no
// keep-alive) for longer than its timeout: delete it, report its items'
// gap as BAD, create it again. A subscription silent again right after a
// rebuild fails the session, which is then replaced (PR #898-style stalls
// are cured by a new session, not by a new subscription).
func (s *session) watchdog(ctx context.Context) error {
	now := time.Now()
	for id, sub := range s.subs {
		since := sub.lastSeen
		if s.backlogAt.After(since) {
			since = s.backlogAt
		}
		if now.Sub(since) <= sub.timeout {
			continue
		}
		s.o.st.rebuilds.Add(1)
		s.o.m.rebuilds.Inc()
		if sub.strikes >= 1 {
			return fmt.Errorf("%w: subscription %d got no response for %s after a rebuild", ErrWatchdog, id, now.Sub(since).Round(time.Millisecond))
		}
		s.o.logBurst("subscription silent: rebuilding it", slog.Uint64("subscription", uint64(id)),
			slog.Duration("silent", now.Sub(since).Round(time.Millisecond)), slog.Int("items", len(sub.items)))
		s.flushOrder(ctx, sub, nil)
		s.reportGap(ctx, sub, ua.StatusBadTimeout)
		delete(s.subs, id)
		s.deleteSubscriptions(ctx, id)
		fresh, bad, err := s.createSubscription(ctx, sub.items, sub.events)
		if err != nil {
			return fmt.Errorf("watchdog rebuild: %w", err)
		}
		fresh.strikes = sub.strikes + 1
		s.subs[fresh.id] = fresh
		if len(bad) > 0 {
			s.emitBad(ctx, bad)
		}
	}
	s.countSubs()
	return nil
}
