package outlet

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Buffer settings (the buffer: key of a sink without store_and_forward).
const (
	DropOldest = "drop-oldest"
	Block      = "block"

	DefaultMaxBytes = 8 << 20
)

// OnFullValues lists what on_full accepts.
var OnFullValues = []string{DropOldest, Block}

// BufferConfig bounds a Memory queue.
type BufferConfig struct {
	// MaxBytes bounds the records waiting (and in flight), estimated from
	// their strings plus a fixed cost each. A single batch larger than the
	// bound is still taken when the queue is empty.
	MaxBytes conf.Size `yaml:"max_bytes"`
	// OnFull is drop-oldest (default: the oldest waiting batch goes, the
	// newest data stays) or block (the router waits, and with it every
	// route and source that feeds it).
	OnFull string `yaml:"on_full"`
}

// SetDefaults fills what the file left out.
func (c *BufferConfig) SetDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.OnFull == "" {
		c.OnFull = DropOldest
	}
}

// Validate checks the settings.
func (c *BufferConfig) Validate() error {
	var p conf.Problems
	if c.MaxBytes < 0 {
		p.Add("max_bytes", "must be positive, e.g. 8MiB")
	}
	if !slices.Contains(OnFullValues, c.OnFull) {
		p.Add("on_full", "%q is not one of drop-oldest, block", c.OnFull)
	}
	return p.Err()
}

// MemoryStats is what a Memory queue holds and has dropped.
type MemoryStats struct {
	Records  int64            `json:"records"`
	Batches  int64            `json:"batches"`
	Bytes    int64            `json:"bytes"`
	MaxBytes int64            `json:"max_bytes"`
	OnFull   string           `json:"on_full"`
	InFlight int64            `json:"in_flight,omitempty"` // batches handed to the sink, not yet taken
	Dropped  map[string]int64 `json:"dropped,omitempty"`   // records, by reason
}

// Drop reasons.
const (
	DropFull     = "full"
	DropShutdown = "shutdown"
)

type entry struct {
	b    *bus.Batch
	size int64
}

// Memory is the bounded in-memory queue of a sink without a spool.
type Memory struct {
	cfg    BufferConfig
	onDrop func(records int, reason string)

	mu       sync.Mutex
	items    []entry // waiting, oldest first
	inflight map[*bus.Batch]int64
	bytes    int64 // waiting and in flight
	records  int64
	dropped  map[string]int64
	closed   bool
	stopping bool // a blocking buffer drops instead: the pipeline is stopping
	// changed is closed and replaced on every change a waiter may want:
	// a batch put (Next waits), space freed (a blocked Put waits).
	changed chan struct{}
}

// NewMemory returns a queue bounded by cfg (defaults applied); onDrop, when
// set, hears of every drop (the runtime counts and logs it).
func NewMemory(cfg BufferConfig, onDrop func(records int, reason string)) *Memory {
	cfg.SetDefaults()
	return &Memory{cfg: cfg, onDrop: onDrop, inflight: map[*bus.Batch]int64{}, dropped: map[string]int64{}, changed: make(chan struct{})}
}

// batches recycles the batches a Memory queue copies routed records into:
// a fresh copy per routed batch was a quarter of what a Modbus-to-MQTT job
// allocated. A batch goes back once its sink took it (Ack) or it was
// dropped; sinks keep nothing of a batch past Write or Send's wait (the
// Sink contract).
var batches = sync.Pool{New: func() any { return new(bus.Batch) }}

// maxPooled keeps an unusually large batch from pinning its memory in the
// pool.
const maxPooled = 1 << 16

func recycle(b *bus.Batch) {
	if cap(b.Records) > maxPooled {
		return
	}
	b.Reset()
	batches.Put(b)
}

// signal wakes every waiter; call with mu held.
func (q *Memory) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Put copies b into the queue. Under drop-oldest it makes room by dropping
// whole waiting batches, oldest first (a batch in flight is the sink's and
// stays); under block it waits for room until ctx ends.
func (q *Memory) Put(ctx context.Context, b *bus.Batch, _ Meta) error {
	if len(b.Records) == 0 {
		return nil
	}
	nb := batches.Get().(*bus.Batch)
	nb.Records = append(nb.Records[:0], b.Records...)
	size := batchSize(nb)
	max := int64(q.cfg.MaxBytes)
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if q.bytes+size <= max || q.bytes == 0 {
			break
		}
		if q.cfg.OnFull == DropOldest || q.stopping {
			reason := DropFull
			if q.cfg.OnFull != DropOldest {
				reason = DropShutdown
			}
			if len(q.items) == 0 {
				break // only batches in flight: take it, over the bound by those
			}
			old := q.items[0]
			q.items[0] = entry{}
			q.items = q.items[1:]
			q.bytes -= old.size
			n := len(old.b.Records)
			q.records -= int64(n)
			recycle(old.b)
			q.dropped[reason] += int64(n)
			if q.onDrop != nil {
				q.onDrop(n, reason)
			}
			continue
		}
		wait := q.changed
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return fmt.Errorf("outlet: buffer full (on_full: block): %w", ctx.Err())
		}
		q.mu.Lock()
	}
	q.items = append(q.items, entry{nb, size})
	q.bytes += size
	q.records += int64(len(nb.Records))
	q.signal()
	q.mu.Unlock()
	return nil
}

// Next hands out the oldest waiting batch.
func (q *Memory) Next(ctx context.Context) (*Delivery, error) {
	q.mu.Lock()
	for len(q.items) == 0 {
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		wait := q.changed
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		q.mu.Lock()
	}
	e := q.items[0]
	q.items[0] = entry{}
	q.items = q.items[1:]
	q.inflight[e.b] = e.size
	q.mu.Unlock()
	var once sync.Once
	return &Delivery{
		Batch: e.b,
		ack: func() {
			once.Do(func() {
				q.mu.Lock()
				delete(q.inflight, e.b)
				q.bytes -= e.size
				q.records -= int64(len(e.b.Records))
				q.signal()
				q.mu.Unlock()
				recycle(e.b)
			})
		},
		nack: func() {
			once.Do(func() {
				q.mu.Lock()
				delete(q.inflight, e.b)
				q.items = slices.Insert(q.items, 0, e)
				q.signal()
				q.mu.Unlock()
			})
		},
	}, nil
}

// Stopping makes a blocking buffer stop blocking: the pipeline is shutting
// down, its sources must be able to finish, and what the buffer cannot take
// would be lost with the process anyway (counted, reason shutdown).
func (q *Memory) Stopping() {
	q.mu.Lock()
	q.stopping = true
	q.signal()
	q.mu.Unlock()
}

// Stats snapshots the queue.
func (q *Memory) Stats() MemoryStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := MemoryStats{
		Records: q.records, Batches: int64(len(q.items) + len(q.inflight)), Bytes: q.bytes,
		MaxBytes: int64(q.cfg.MaxBytes), OnFull: q.cfg.OnFull, InFlight: int64(len(q.inflight)),
	}
	if len(q.dropped) > 0 {
		s.Dropped = make(map[string]int64, len(q.dropped))
		for k, v := range q.dropped {
			s.Dropped[k] = v
		}
	}
	return s
}

// Empty reports whether nothing waits or is in flight.
func (q *Memory) Empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes == 0
}

// WaitEmpty waits until nothing waits or is in flight, or ctx ends.
func (q *Memory) WaitEmpty(ctx context.Context) bool {
	for {
		q.mu.Lock()
		if q.bytes == 0 || q.closed {
			q.mu.Unlock()
			return true
		}
		wait := q.changed
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		}
	}
}

// Close ends the queue. What it still held is dropped, counted under
// reason shutdown: an in-memory buffer does not outlive the process.
func (q *Memory) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if q.records > 0 {
		q.dropped[DropShutdown] += q.records
		if q.onDrop != nil {
			q.onDrop(int(q.records), DropShutdown)
		}
	}
	q.items, q.records, q.bytes = nil, 0, 0
	q.signal()
	return nil
}

// recordCost is the fixed part of a record's estimated size: the struct
// itself and a share of the slice it sits in.
const recordCost = 96

// batchSize estimates the memory a batch holds.
func batchSize(b *bus.Batch) int64 {
	n := int64(0)
	for i := range b.Records {
		r := &b.Records[i]
		n += recordCost + int64(len(r.Source)+len(r.Device)+len(r.Tag)+len(r.Unit)+len(r.Value.Str()))
		for k, v := range r.Attrs {
			n += int64(len(k) + len(v) + 16)
		}
	}
	return n
}

var _ Queue = (*Memory)(nil)
