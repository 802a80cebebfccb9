package outlet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// chanQueue is a Pub/Sub whose subscription always has every published
// message ready, so the scheduler's choices do not depend on goroutine
// timing. It keeps what was published to check what was acknowledged.
type chanQueue struct {
	ch  chan *message.Message
	mu  sync.Mutex
	all []*message.Message
}

func newChanQueue() *chanQueue { return &chanQueue{ch: make(chan *message.Message, 1024)} }

func (c *chanQueue) Publish(_ string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.all = append(c.all, m)
		c.ch <- m
	}
	return nil
}

func (c *chanQueue) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return c.ch, nil
}

func (c *chanQueue) Close() error { return nil }

// unacked lists the published messages (by index) not acknowledged.
func (c *chanQueue) unacked() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range c.all {
		select {
		case <-m.Acked():
		default:
			out = append(out, i)
		}
	}
	return out
}

func withBehindAfter(t *testing.T, n uint64) {
	saved := BehindAfter
	BehindAfter = n
	t.Cleanup(func() { BehindAfter = saved })
}

// got is one delivery as the sink saw it.
type got struct {
	seq      uint64
	live     bool // a live copy (not from the spool)
	backfill bool
}

func (g got) String() string {
	kind := "S"
	if g.live {
		kind = "L"
	}
	if g.backfill {
		kind += "b"
	}
	return fmt.Sprintf("%s%d", kind, g.seq)
}

func nextOf(t *testing.T, l *LiveFirst) (*Delivery, got) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	d, err := l.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	l.mu.Lock()
	live := false
	for _, b := range l.flying {
		live = live || b == d.Batch
	}
	l.mu.Unlock()
	return d, got{seq: d.Batch.Records[0].Seq, live: live, backfill: d.Batch.Backfill}
}

// liveFirstOver puts seqs 1..n, one record a batch, while no runner reads.
// With BehindAfter b, seqs 1..b are backlog only and b+1..n also go live.
func liveFirstOver(t *testing.T, cfg DrainConfig, n int) (*LiveFirst, *chanQueue) {
	t.Helper()
	cq := newChanQueue()
	cfg.Mode = DrainLiveFirst
	l := NewLiveFirst(NewBus(cq, "sink/cloud"), cfg, nil)
	t.Cleanup(func() { _ = l.Close() })
	for i := 1; i <= n; i++ {
		if err := l.Put(t.Context(), batch(uint64(i)), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	return l, cq
}

// drainAll takes and acknowledges everything, in order, until both sides
// are empty, and checks that every seq came exactly once.
func drainAll(t *testing.T, l *LiveFirst, cq *chanQueue, n int) []got {
	t.Helper()
	var out []got
	seen := map[uint64]int{}
	for len(seen) < n {
		d, g := nextOf(t, l)
		d.Ack()
		out = append(out, g)
		seen[g.seq]++
	}
	for s, c := range seen {
		if c != 1 {
			t.Errorf("seq %d delivered %d times: %v", s, c, out)
		}
	}
	// What is left are spool entries whose live copy went: released unsent.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if d, err := l.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after every seq, Next gave %v, %v", d, err)
	}
	if u := cq.unacked(); len(u) > 0 {
		t.Fatalf("spool entries never released: %v (deliveries %v)", u, out)
	}
	return out
}

func kinds(gs []got) string {
	var b strings.Builder
	for _, g := range gs {
		b.WriteString(g.String())
		b.WriteByte(' ')
	}
	return strings.TrimSpace(b.String())
}

// While a backlog and live data both wait, live gets its share of the
// records; each side keeps its order; the backlog is marked; a spool entry
// whose live copy went is released unsent, and once the spool reaches live
// data still waiting it carries on in order, unmarked.
func TestLiveFirstShareAndOrder(t *testing.T) {
	for _, tc := range []struct {
		share float64
		want  string // the deliveries while both sides wait
	}{
		{0.5, "L9 Sb1 L10 Sb2 L11 Sb3 L12 Sb4 L13 Sb5 L14 Sb6 L15 Sb7 L16 Sb8"},
		{0.25, "L9 Sb1 Sb2 Sb3 L10 Sb4 Sb5 Sb6 L11 Sb7 Sb8"},
		{1, "L9 L10 L11 L12 L13 L14 L15 L16 L17 L18 L19 L20 Sb1 Sb2 Sb3 Sb4 Sb5 Sb6 Sb7 Sb8"},
	} {
		t.Run(fmt.Sprint(tc.share), func(t *testing.T) {
			withBehindAfter(t, 8)
			l, cq := liveFirstOver(t, DrainConfig{LiveShare: tc.share}, 20)
			out := drainAll(t, l, cq, 20)
			head := kinds(out[:len(strings.Fields(tc.want))])
			if head != tc.want {
				t.Fatalf("deliveries\n got %s\nwant %s…", kinds(out), tc.want)
			}
			var lastLive, lastSpool uint64
			for _, g := range out {
				last := &lastSpool
				if g.live {
					last = &lastLive
				}
				if g.seq < *last {
					t.Fatalf("out of order within its kind: %s", kinds(out))
				}
				*last = g.seq
				if g.backfill != (!g.live && g.seq <= 8) {
					t.Fatalf("seq %d marked backfill %v: %s", g.seq, g.backfill, kinds(out))
				}
			}
			st := l.Stats()
			if st.Backfilled != 8 || st.Skipped != st.LiveSent || st.LiveSent == 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A full live buffer drops its oldest copy, counted; that batch still
// comes, from the spool, marked backfill.
func TestLiveFirstBoundedLiveQueue(t *testing.T) {
	withBehindAfter(t, 8)
	l, cq := liveFirstOver(t, DrainConfig{LiveShare: 0.5, LiveBuffer: conf.Size(3 * batchSize(batch(0)))}, 20)
	if st := l.Stats(); st.LiveDropped != 9 || st.LiveWaiting != 3 {
		t.Fatalf("stats %+v, want 9 dropped and 3 waiting", st)
	}
	out := drainAll(t, l, cq, 20)
	want := "L18 Sb1 L19 Sb2 L20 Sb3 Sb4 Sb5 Sb6 Sb7 Sb8 Sb9 Sb10 Sb11 Sb12 Sb13 Sb14 Sb15 Sb16 Sb17"
	if kinds(out) != want {
		t.Fatalf("deliveries\n got %s\nwant %s", kinds(out), want)
	}
}

// A spool entry whose live copy is out waits for it: released unsent when
// the copy is taken, sent in its place when the copy comes back.
func TestLiveFirstWaitsForTheLiveCopy(t *testing.T) {
	for _, taken := range []bool{true, false} {
		t.Run(fmt.Sprintf("taken=%v", taken), func(t *testing.T) {
			withBehindAfter(t, 1)
			l, cq := liveFirstOver(t, DrainConfig{LiveShare: 0.5}, 3)
			d2, g := nextOf(t, l)
			if g.String() != "L2" {
				t.Fatalf("first %s, want L2", g)
			}
			d1, g := nextOf(t, l)
			if g.String() != "Sb1" {
				t.Fatalf("second %s, want Sb1", g)
			}
			d1.Ack()
			d3, g := nextOf(t, l)
			if g.String() != "L3" {
				t.Fatalf("third %s, want L3 (spool entry 2 waits for its live copy)", g)
			}
			d3.Ack()
			if taken {
				d2.Ack()
				drainAll(t, l, cq, 0)
				return
			}
			d2.Nack() // the runner stopped with it in hand
			d, g := nextOf(t, l)
			if g.seq != 2 || g.backfill {
				t.Fatalf("after the live copy came back: %s, want seq 2 unmarked", g)
			}
			d.Ack()
			drainAll(t, l, cq, 0)
		})
	}
}

// Entries spooled before this outlet existed (an earlier run) are a backlog:
// new data goes ahead of them, and they are marked.
func TestLiveFirstBacklogFromAnEarlierRun(t *testing.T) {
	withBehindAfter(t, 8)
	cq := newChanQueue()
	earlier := NewBus(cq, "sink/cloud")
	for i := 1; i <= 3; i++ {
		if err := earlier.Put(t.Context(), batch(uint64(i)), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	l := NewLiveFirst(NewBus(cq, "sink/cloud"), DrainConfig{Mode: DrainLiveFirst}, nil)
	defer l.Close()
	d, g := nextOf(t, l)
	if g.String() != "Sb1" {
		t.Fatalf("first %s", g)
	}
	d.Ack()
	if err := l.Put(t.Context(), batch(4), Meta{}); err != nil {
		t.Fatal(err)
	}
	out := drainAll(t, l, cq, 3)
	if kinds(out) != "L4 Sb2 Sb3" {
		t.Fatalf("deliveries %s", kinds(out))
	}
}

// While the link is down nothing is live; when it comes back, the live
// copies made before it went are backlog: they go from the spool, marked.
// A live copy that waited past live_max_age goes from the spool too.
func TestLiveFirstOutageCopiesAreBacklog(t *testing.T) {
	withBehindAfter(t, 2)
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "cloud", Sink: true})
	if err != nil {
		t.Fatal(err)
	}
	env.Up()
	l, cq := liveFirstOver(t, DrainConfig{LiveShare: 0.5, LiveMaxAge: conf.Duration(time.Hour)}, 0)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go l.watchLink(ctx, env)
	waitfor.Until(t, 5*time.Second, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.link != nil }, waitfor.Say("watchLink never started"))
	for i := 1; i <= 4; i++ {
		_ = l.Put(t.Context(), batch(uint64(i)), Meta{}) // 3 and 4 live: made before the link went
	}
	env.Down(errors.New("link cut"))
	_ = l.Put(t.Context(), batch(5), Meta{}) // while it is away: backlog only
	if st := l.Stats(); st.LiveWaiting != 2 {
		t.Fatalf("while down: %+v, want the 2 copies made before", st)
	}
	env.Up()
	waitfor.Until(t, 5*time.Second, func() bool { return l.Stats().LiveDropped == 2 },
		func() string { return fmt.Sprintf("copies from before the outage kept: %+v", l.Stats()) })
	_ = l.Put(t.Context(), batch(6), Meta{})
	if out := kinds(drainAll(t, l, cq, 6)); out != "L6 Sb1 Sb2 Sb3 Sb4 Sb5" {
		t.Fatalf("deliveries %s", out)
	}

	l.cfg.LiveMaxAge = conf.Duration(time.Nanosecond)
	_ = l.Put(t.Context(), batch(7), Meta{})
	if l.Stats().LiveWaiting != 1 {
		t.Fatalf("no live copy of 7: %+v", l.Stats())
	}
	d, g := nextOf(t, l)
	if g.live || g.seq != 7 {
		t.Fatalf("a stale live copy went: %s", g)
	}
	d.Ack()
	if st := l.Stats(); st.LiveDropped != 3 {
		t.Fatalf("stale copy not counted: %+v", st)
	}
}

func TestDrainConfigValidate(t *testing.T) {
	for _, c := range []DrainConfig{{Mode: "newest-first"}, {LiveShare: 1.5}, {LiveShare: -0.2}, {LiveBuffer: -1}, {LiveMaxAge: -1}} {
		c.SetDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := DrainConfig{Mode: DrainLiveFirst}
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.LiveShare != DefaultLiveShare {
		t.Fatalf("defaults %+v: %v", c, err)
	}
}
