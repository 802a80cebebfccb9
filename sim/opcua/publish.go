package opcua

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// The simulator runs subscriptions itself rather than through gopcua's
// server.Subscription.run: that loop sends each response straight on the
// secure channel, keeps no sent messages and answers Republish
// "unsupported", so a test could neither hold responses back, lose one,
// nor have one republished. gopcua's Subscription value is still created
// and registered, because its MonitoredItemService files items under it
// and its NotifyChannel is where notify and the initial values go; only
// its goroutine is never started.

// DefaultRetransmitQueue is how many sent NotificationMessages a
// subscription keeps for Republish until they are acknowledged.
const DefaultRetransmitQueue = 64

// pubReq is one Publish request waiting for a subscription with something
// to say.
type pubReq struct {
	sc      *uasc.SecureChannel
	id      uint32
	handle  uint32
	results []ua.StatusCode // of its acknowledgements
}

// pubState is the subscription engine of one generation.
type pubState struct {
	mu     sync.Mutex
	queues map[string]chan pubReq // Publish requests by session token
	subs   map[uint32]*simSub
}

// simSub is one subscription.
type simSub struct {
	g         *generation
	sub       *server.Subscription
	tok       string      // guarded by pubState.mu (TransferSubscriptions moves it)
	q         chan pubReq // guarded by pubState.mu
	events    chan *ua.EventFieldList
	interval  time.Duration
	keepAlive int
	lifetime  int

	mu   sync.Mutex
	seq  uint32                    // last sequence number used
	sent []*ua.NotificationMessage // unacknowledged, oldest first
}

// heldResp is a publish response kept back by HoldPublish.
type heldResp struct {
	sc   *uasc.SecureChannel
	id   uint32
	resp *ua.PublishResponse
}

// HoldPublish keeps every publish response (data and keep-alive) back
// from now on instead of sending it, as a server or network that stalls
// would; the subscriptions go on numbering messages as the Publish
// requests in hand allow. ReleasePublish sends them.
func (s *Server) HoldPublish() {
	s.faultMu.Lock()
	s.holding = true
	s.faultMu.Unlock()
}

// ReleasePublish stops holding and sends the held responses, the newest
// first when reverse is true (so the client receives them out of order),
// and returns how many there were.
func (s *Server) ReleasePublish(reverse bool) int {
	s.faultMu.Lock()
	held := s.held
	s.held, s.holding = nil, false
	s.faultMu.Unlock()
	if reverse {
		slices.Reverse(held)
	}
	for _, h := range held {
		_ = h.sc.SendResponseWithContext(context.Background(), h.id, h.resp)
	}
	return len(held)
}

// Held returns how many publish responses HoldPublish holds now.
func (s *Server) Held() int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return len(s.held)
}

// LosePublish makes the next n NotificationMessages that carry data go
// missing: they are numbered and kept for Republish like any other, but
// never sent, and the Publish request each would have answered waits for
// the next message instead.
func (s *Server) LosePublish(n int) {
	s.faultMu.Lock()
	s.lose += n
	s.faultMu.Unlock()
}

// deliver sends a publish response, holds it, or (for data when a loss
// is pending) drops it; false means the channel is gone.
func (s *Server) deliver(pr pubReq, resp *ua.PublishResponse, data bool) (sent, ok bool) {
	s.faultMu.Lock()
	if data && s.lose > 0 {
		s.lose--
		s.faultMu.Unlock()
		s.cnt.lost.Add(1)
		return false, true
	}
	if s.holding {
		s.held = append(s.held, heldResp{sc: pr.sc, id: pr.id, resp: resp})
		s.faultMu.Unlock()
		return true, true
	}
	s.faultMu.Unlock()
	return true, pr.sc.SendResponseWithContext(context.Background(), pr.id, resp) == nil
}

func header(handle uint32, code ua.StatusCode) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp: time.Now(), RequestHandle: handle, ServiceResult: code,
		ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{}, AdditionalHeader: ua.NewExtensionObject(nil),
	}
}

func (g *generation) queue(tok string) chan pubReq {
	g.pub.mu.Lock()
	defer g.pub.mu.Unlock()
	q := g.pub.queues[tok]
	if q == nil {
		q = make(chan pubReq, 100)
		g.pub.queues[tok] = q
	}
	return q
}

func (g *generation) simSub(id uint32, tok string) *simSub {
	g.pub.mu.Lock()
	defer g.pub.mu.Unlock()
	x := g.pub.subs[id]
	if x == nil || x.tok != tok {
		return nil
	}
	return x
}

// createSubscription registers a gopcua Subscription for the monitored
// item service and runs the simulator's own loop for it. Ids come from a
// counter of the Server, so they are never reused, not even across
// restarts (gopcua numbers them count+1).
func (g *generation) createSubscription(sc *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.CreateSubscriptionRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess := g.srv.Session(req.RequestHeader)
	if sess == nil {
		return nil, ua.StatusBadSessionIDInvalid
	}
	interval := max(req.RequestedPublishingInterval, 5)
	keepAlive := max(req.RequestedMaxKeepAliveCount, 1)
	lifetime := max(req.RequestedLifetimeCount, 3*keepAlive)
	sub := server.NewSubscription()
	sub.ID = g.s.subIDs.Add(1)
	sub.Session = sess
	sub.Channel = sc
	sub.RevisedPublishingInterval = interval
	sub.RevisedMaxKeepAliveCount = keepAlive
	sub.RevisedLifetimeCount = lifetime
	tok := req.RequestHeader.AuthenticationToken.String()
	x := &simSub{
		g: g, sub: sub, tok: tok, q: g.queue(tok), events: make(chan *ua.EventFieldList, 1000),
		interval: time.Duration(interval * float64(time.Millisecond)), keepAlive: int(keepAlive), lifetime: int(lifetime),
	}
	ss := g.srv.SubscriptionService
	ss.Mu.Lock()
	ss.Subs[sub.ID] = sub
	ss.Mu.Unlock()
	g.pub.mu.Lock()
	g.pub.subs[sub.ID] = x
	g.pub.mu.Unlock()
	g.s.cnt.subsCreated.Add(1)
	go x.run(g.ctx)
	return &ua.CreateSubscriptionResponse{
		ResponseHeader:            header(req.RequestHeader.RequestHandle, ua.StatusOK),
		SubscriptionID:            sub.ID,
		RevisedPublishingInterval: interval,
		RevisedLifetimeCount:      lifetime,
		RevisedMaxKeepAliveCount:  keepAlive,
	}, nil
}

// publish takes the request's acknowledgements and queues it for the
// session's subscriptions; the answer is sent later by one of them.
func (g *generation) publish(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	g.s.cnt.publishRequests.Add(1)
	if g.s.stall.Load() {
		g.s.cnt.publishSwallowed.Add(1)
		return nil, nil
	}
	req, ok := r.(*ua.PublishRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	tok := req.RequestHeader.AuthenticationToken.String()
	results := make([]ua.StatusCode, len(req.SubscriptionAcknowledgements))
	for i, a := range req.SubscriptionAcknowledgements {
		results[i] = ua.StatusBadSubscriptionIDInvalid
		if x := g.simSub(a.SubscriptionID, tok); x != nil {
			results[i] = x.ack(a.SequenceNumber)
		}
	}
	select {
	case g.queue(tok) <- pubReq{sc: sc, id: reqID, handle: req.RequestHeader.RequestHandle, results: results}:
		return nil, nil
	default:
		return nil, ua.StatusBadTooManyPublishRequests
	}
}

// republish answers from the subscription's retransmission queue.
func (g *generation) republish(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.RepublishRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	if g.s.cfg.NoRepublish {
		return nil, ua.StatusBadServiceUnsupported
	}
	x := g.simSub(req.SubscriptionID, req.RequestHeader.AuthenticationToken.String())
	if x == nil {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	msg := x.find(req.RetransmitSequenceNumber)
	if msg == nil {
		return nil, ua.StatusBadMessageNotAvailable
	}
	g.s.cnt.republished.Add(1)
	return &ua.RepublishResponse{ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), NotificationMessage: msg}, nil
}

func (x *simSub) ack(seq uint32) ua.StatusCode {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, m := range x.sent {
		if m.SequenceNumber == seq {
			x.sent = slices.Delete(x.sent, i, i+1)
			return ua.StatusOK
		}
	}
	return ua.StatusBadSequenceNumberUnknown
}

func (x *simSub) find(seq uint32) *ua.NotificationMessage {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, m := range x.sent {
		if m.SequenceNumber == seq {
			return m
		}
	}
	return nil
}

// queue is where the subscription's session queues its Publish requests.
func (x *simSub) queue() chan pubReq {
	x.g.pub.mu.Lock()
	defer x.g.pub.mu.Unlock()
	return x.q
}

// run collects notifications and, each publishing interval, answers one
// Publish request with them, or with a keep-alive after keepAlive silent
// intervals. A subscription without requests for lifetime intervals is
// deleted; one whose connection is gone is kept for TransferSubscriptions.
func (x *simSub) run(ctx context.Context) {
	g := x.g
	ss := g.srv.SubscriptionService
	defer func() {
		g.pub.mu.Lock()
		delete(g.pub.subs, x.sub.ID)
		g.pub.mu.Unlock()
		if !g.subGone(x.sub) {
			ss.DeleteSubscription(x.sub.ID)
		}
	}()
	t := time.NewTicker(x.interval)
	defer t.Stop()
	queued := map[uint32]*ua.MonitoredItemNotification{}
	var evq []*ua.EventFieldList
	silent, starved := 0, 0
	// waiting is x.q while data is due and no request was in hand at the
	// tick: the next request is answered at once, as gopcua's loop does.
	var waiting chan pubReq
	answer := func(pr pubReq) bool {
		silent, starved, waiting = 0, 0, nil
		if len(queued) == 0 && len(evq) == 0 {
			return x.send(pr, nil)
		}
		var data []*ua.ExtensionObject
		if len(queued) > 0 {
			items := make([]*ua.MonitoredItemNotification, 0, len(queued))
			for _, n := range queued {
				items = append(items, n)
			}
			slices.SortFunc(items, func(a, b *ua.MonitoredItemNotification) int { return cmp.Compare(a.ClientHandle, b.ClientHandle) })
			clear(queued)
			eo := ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: items, DiagnosticInfos: []*ua.DiagnosticInfo{}})
			eo.UpdateMask()
			data = append(data, eo)
		}
		if len(evq) > 0 {
			eo := ua.NewExtensionObject(&ua.EventNotificationList{Events: evq})
			eo.UpdateMask()
			data = append(data, eo)
			evq = nil
		}
		return x.send(pr, data)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-x.sub.NotifyChannel:
			// A queue of one per item, as gopcua's: the newest value wins.
			queued[n.ClientHandle] = n
		case e := <-x.events:
			evq = append(evq, e)
		case pr := <-waiting:
			if !answer(pr) {
				return
			}
		case <-t.C:
			if g.subGone(x.sub) {
				return
			}
			if len(queued) == 0 && len(evq) == 0 {
				if silent++; silent < x.keepAlive {
					continue
				}
			}
			q := x.queue()
			select {
			case pr := <-q:
				if !answer(pr) {
					return
				}
			default:
				if starved++; starved > x.lifetime {
					return
				}
				if len(queued) > 0 || len(evq) > 0 {
					waiting = q
				}
			}
		}
	}
}

// send numbers a message (a keep-alive when data is nil: it carries the
// next number and uses none) and delivers it; false means the
// subscription is gone.
func (x *simSub) send(pr pubReq, data []*ua.ExtensionObject) bool {
	limit := x.g.s.cfg.RetransmitQueue
	x.mu.Lock()
	msg := &ua.NotificationMessage{PublishTime: time.Now(), NotificationData: data}
	if data == nil {
		msg.NotificationData = []*ua.ExtensionObject{}
		msg.SequenceNumber = nextSeq(x.seq)
	} else {
		x.seq = nextSeq(x.seq)
		msg.SequenceNumber = x.seq
		if limit > 0 {
			x.sent = append(x.sent, msg)
			if len(x.sent) > limit {
				x.sent = slices.Delete(x.sent, 0, len(x.sent)-limit)
			}
		}
	}
	avail := make([]uint32, len(x.sent))
	for i, m := range x.sent {
		avail[i] = m.SequenceNumber
	}
	x.mu.Unlock()
	resp := &ua.PublishResponse{
		ResponseHeader:           header(pr.handle, ua.StatusOK),
		SubscriptionID:           x.sub.ID,
		NotificationMessage:      msg,
		AvailableSequenceNumbers: avail,
		Results:                  pr.results,
		DiagnosticInfos:          []*ua.DiagnosticInfo{},
	}
	if pr.results == nil {
		resp.Results = []ua.StatusCode{}
	}
	sent, ok := x.g.s.deliver(pr, resp, data != nil)
	if !ok && !x.g.subGone(x.sub) {
		// The request's channel is gone (a network blip), not the
		// subscription: as a real server, keep it and its retransmission
		// queue for a new session to take over with TransferSubscriptions.
		// The lifetime counter ends it if nobody does.
		x.g.s.cnt.deadChannel.Add(1)
		return true
	}
	if !sent {
		// Lost: the request (with its acknowledgement results) waits for
		// the next message.
		select {
		case x.queue() <- pr:
		default:
		}
	}
	return ok
}

// nextSeq is the sequence number after seq: it wraps from 2^32-1 to 1,
// because 0 is never used.
func nextSeq(seq uint32) uint32 {
	if seq == ^uint32(0) {
		return 1
	}
	return seq + 1
}
