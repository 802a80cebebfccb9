package outlet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/conf"
)

func batch(seqs ...uint64) *bus.Batch {
	b := &bus.Batch{}
	for _, s := range seqs {
		b.Records = append(b.Records, bus.Record{Source: "s", Tag: "t", Value: bus.Double(1), Seq: s})
	}
	return b
}

func take(t *testing.T, q *Memory) *Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMemoryDropsOldestWaitingBatch(t *testing.T) {
	one := batchSize(batch(0))
	var dropped []int
	q := NewMemory(BufferConfig{OnFull: DropOldest}, func(n int, reason string) {
		if reason != DropFull {
			t.Errorf("reason %q", reason)
		}
		dropped = append(dropped, n)
	})
	q.cfg.MaxBytes = conf.Size(3 * one)
	ctx := context.Background()
	for i := range 3 {
		if err := q.Put(ctx, batch(uint64(i)), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	inHand := take(t, q) // seq 0 is the sink's now: never dropped
	if err := q.Put(ctx, batch(3), Meta{}); err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || q.Stats().Dropped[DropFull] != 1 {
		t.Fatalf("dropped %v, stats %+v", dropped, q.Stats())
	}
	inHand.Ack()
	if got := take(t, q).Batch.Records[0].Seq; got != 2 {
		t.Fatalf("after dropping the oldest waiting batch, next is seq %d, want 2", got)
	}
}

func TestMemoryBlockWaitsForRoom(t *testing.T) {
	q := NewMemory(BufferConfig{OnFull: Block}, nil)
	q.cfg.MaxBytes = conf.Size(batchSize(batch(0)))
	ctx := context.Background()
	if err := q.Put(ctx, batch(0), Meta{}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.Put(short, batch(1), Meta{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put into a full blocking buffer returned %v", err)
	}
	put := make(chan error, 1)
	go func() { put <- q.Put(ctx, batch(1), Meta{}) }()
	take(t, q).Ack()
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if got := take(t, q).Batch.Records[0].Seq; got != 1 {
		t.Fatalf("seq %d", got)
	}
}

func TestMemoryNackGoesBackFirst(t *testing.T) {
	q := NewMemory(BufferConfig{}, nil)
	ctx := context.Background()
	b := batch(0)
	if err := q.Put(ctx, b, Meta{}); err != nil {
		t.Fatal(err)
	}
	b.Records[0].Seq = 99 // the caller reuses its batch; the queue kept a copy
	_ = q.Put(ctx, batch(1), Meta{})
	d := take(t, q)
	d.Nack()
	d.Ack() // a second settle is ignored
	for _, want := range []uint64{0, 1} {
		d := take(t, q)
		if got := d.Batch.Records[0].Seq; got != want {
			t.Fatalf("got seq %d, want %d", got, want)
		}
		d.Ack()
	}
	if !q.Empty() {
		t.Fatalf("not empty: %+v", q.Stats())
	}
}

func TestMemoryCloseCountsWhatItHeld(t *testing.T) {
	var lost int
	q := NewMemory(BufferConfig{}, func(n int, reason string) {
		if reason == DropShutdown {
			lost += n
		}
	})
	_ = q.Put(context.Background(), batch(0, 1, 2), Meta{})
	_ = q.Close()
	if lost != 3 || q.Stats().Dropped[DropShutdown] != 3 {
		t.Fatalf("lost %d, stats %+v", lost, q.Stats())
	}
	if _, err := q.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestBufferConfigValidate(t *testing.T) {
	c := BufferConfig{OnFull: "drop-newest"}
	c.SetDefaults()
	if err := c.Validate(); err == nil {
		t.Fatal("on_full drop-newest accepted")
	}
}

// At a stop a blocking buffer stops blocking, so the sources behind it can
// finish: what it cannot take is dropped, counted as shutdown.
func TestMemoryStoppingUnblocks(t *testing.T) {
	q := NewMemory(BufferConfig{OnFull: Block}, nil)
	q.cfg.MaxBytes = conf.Size(batchSize(batch(0)))
	ctx := context.Background()
	_ = q.Put(ctx, batch(0), Meta{})
	put := make(chan error, 1)
	go func() { put <- q.Put(ctx, batch(1), Meta{}) }()
	q.Stopping()
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if got := q.Stats().Dropped[DropShutdown]; got != 1 {
		t.Fatalf("dropped at shutdown %d, want 1", got)
	}
}
