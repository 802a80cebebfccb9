// Package outlet is where ferry's delivery semantics live: the queue in
// front of each sink and the runner that hands the sink its batches,
// retries what failed and acknowledges what was taken.
//
// Every sink has an outlet of its own, so the router never waits on a
// sink's Write: a sink that is slow, stuck or down holds back nothing but
// itself. The queue is one of:
//
//   - Memory: a bounded in-memory queue of decoded batches, for a sink
//     without store_and_forward (the buffer: key). When full it drops the
//     oldest waiting batch (counted, shown, logged) or, with on_full: block,
//     makes the router wait.
//   - Bus: a watermill Publisher/Subscriber that keeps the batches durably:
//     the local spool or the sink's JetStream stream. A batch is encoded only
//     here, where it leaves the process.
//
// A batch leaves a queue only when the sink took it (Delivery.Ack); a batch
// the runner gives back (a reload swapping the runner, a stop) stays at the
// head for the next one.
package outlet

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
)

// Metadata a Bus queue sets on batches, so a spool (or a JetStream queue
// read by another instance) can sort them into lanes and expire them.
const (
	MetaPriority = spool.MetaPriority
	MetaTTL      = spool.MetaTTL
)

// Meta is what the router says about a routed batch besides its records.
type Meta struct {
	Priority int
	TTL      time.Duration
}

func (m Meta) priority() string { return strconv.Itoa(m.Priority) }

// Queue holds one sink's routed batches until the sink took them.
type Queue interface {
	// Put queues the records of b; the queue keeps its own copy, so the
	// caller may reuse b. It waits only when the queue is full under
	// on_full: block (or, for a Bus, when its backend makes it wait).
	Put(ctx context.Context, b *bus.Batch, m Meta) error
	// Next returns the next batch for the sink, waiting for one until ctx
	// ends. A batch that cannot be decoded comes back as an error (already
	// acknowledged: it would not decode on a retry either); the caller
	// counts it and asks again.
	Next(ctx context.Context) (*Delivery, error)
	// Close releases the queue. What a durable queue holds stays on disk
	// or in the stream; a Memory queue reports what it still held.
	Close() error
}

// Delivery is one batch handed to a sink. Exactly one of Ack and Nack is
// called: Ack once the far side took it (it leaves the queue), Nack to give
// it back (it is handed out again, first).
type Delivery struct {
	Batch *bus.Batch
	ack   func()
	nack  func()
}

// Ack releases the batch from its queue.
func (d *Delivery) Ack() { d.ack() }

// Nack gives the batch back to the head of its queue.
func (d *Delivery) Nack() { d.nack() }

// ErrClosed is returned by a queue after Close.
var ErrClosed = errors.New("outlet: queue closed")

// ErrUndecodable marks a queued batch that did not decode.
var ErrUndecodable = errors.New("outlet: batch does not decode")
