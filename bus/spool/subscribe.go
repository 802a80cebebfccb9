package spool

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Subscribe delivers the topic's messages, highest lane first and in order
// within a lane, until ctx ends or the handle closes. Each subscription has
// up to Config.Window messages delivered and not yet acknowledged. An Ack
// removes the message for good (its segment is deleted once every entry in
// it is done); a Nack, the subscription's end or Close makes it come again
// before later messages of its lane. Several subscriptions of a topic
// compete for its messages; order then holds per subscription only.
//
// A message's context is cancelled when it is acknowledged, nacked or the
// subscription ends.
func (s *Spool) Subscribe(ctx context.Context, topicName string) (<-chan *message.Message, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	st := s.st
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil, ErrClosed
	}
	t := st.topicLocked(topicName)
	st.mu.Unlock()
	out := make(chan *message.Message)
	s.subs.Add(1)
	go s.serve(ctx, t, out)
	return out, nil
}

func (s *Spool) serve(ctx context.Context, t *topic, out chan<- *message.Message) {
	st := s.st
	var watchers sync.WaitGroup
	defer s.subs.Done()
	defer close(out)
	defer watchers.Wait()
	slots := make(chan struct{}, st.cfg.Window)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
		e := st.next(ctx, t, s.closing)
		if e == nil {
			return
		}
		msg := message.NewMessage(e.uuid, e.payload)
		msg.Metadata = make(message.Metadata, len(e.md))
		for k, v := range e.md {
			msg.Metadata[k] = v
		}
		mctx, cancel := context.WithCancel(ctx)
		msg.SetContext(mctx)
		select {
		case out <- msg:
		case <-ctx.Done():
			st.nack(e)
			cancel()
			return
		case <-s.closing:
			st.nack(e)
			cancel()
			return
		}
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			defer cancel()
			select {
			case <-msg.Acked():
				st.ack(e)
			case <-msg.Nacked():
				st.nack(e)
			case <-ctx.Done():
				st.settle(e, msg)
			case <-s.closing:
				st.settle(e, msg)
			}
			<-slots
		}()
	}
}

// settle ends a delivery whose subscription ended: an Ack that came in
// time counts, anything else is given back for delivery again.
func (st *store) settle(e *entry, msg *message.Message) {
	select {
	case <-msg.Acked():
		st.ack(e)
	default:
		st.nack(e)
	}
}
