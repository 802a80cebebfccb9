package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

func TestMessageRoundTrip(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			s := open(t, cfg)
			in := batchMsg(500, 7)
			in.Metadata.Set("custom", "ü value")
			in.Metadata.Set(MetaTTL, "1h")
			publish(t, s, "sink/out", in)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, cfg)
			got := receive(t, subscribe(t, s, "sink/out"), 1, 5*time.Second)[0]
			if got.UUID != in.UUID || string(got.Payload) != string(in.Payload) {
				t.Fatalf("got %s (%d bytes), want %s (%d bytes)", got.UUID, len(got.Payload), in.UUID, len(in.Payload))
			}
			for k, v := range in.Metadata {
				if got.Metadata.Get(k) != v {
					t.Errorf("metadata %s = %q, want %q", k, got.Metadata.Get(k), v)
				}
			}
			if len(got.Metadata) != len(in.Metadata) {
				t.Errorf("metadata %v, want %v", got.Metadata, in.Metadata)
			}
			var b bus.Batch
			var d bus.Decoder
			if err := d.DecodeMessage(got, &b); err != nil || b.Len() != 500 || b.Records[0].Seq != 7 {
				t.Fatalf("decode: %v, %d records", err, b.Len())
			}
		})
	}
}

func TestLanesDrainHighestFirst(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			s := open(t, testConfig(t, p.encrypt))
			var want []string
			prios := []string{"0", "10", "5", "-3"}
			for i := range 40 {
				publish(t, s, "t", msg(i, MetaPriority, prios[i%4]))
			}
			for _, pr := range []int{1, 2, 0, 3} { // 10, 5, 0, -3
				for i := pr; i < 40; i += 4 {
					want = append(want, string(msg(i).Payload))
				}
			}
			got := payloads(receive(t, subscribe(t, s, "t"), 40, 5*time.Second))
			if !slices.Equal(got, want) {
				t.Fatalf("order\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestLiveHighLaneOvertakesBacklog: a high-priority message published while
// a low lane's backlog drains is delivered next.
func TestLiveHighLaneOvertakesBacklog(t *testing.T) {
	s := open(t, testConfig(t, false))
	for i := range 10 {
		publish(t, s, "t", msg(i))
	}
	ch := subscribe(t, s, "t")
	var first *message.Message
	select {
	case first = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
	// With window 1 the next message is taken only after this Ack.
	publish(t, s, "t", msg(99, MetaPriority, "1"))
	first.Ack()
	got := payloads(receive(t, ch, 2, 5*time.Second))
	if !slices.Equal(got, []string{"m000099", "m000001"}) {
		t.Fatalf("got %v after m000000, want the priority message first", got)
	}
}

func TestNackRedeliversInOrder(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			s := open(t, testConfig(t, p.encrypt))
			for i := range 5 {
				publish(t, s, "t", msg(i))
			}
			ch := subscribe(t, s, "t")
			var got []string
			for len(got) < 5 {
				select {
				case m := <-ch:
					got = append(got, string(m.Payload))
					if len(got) == 2 || len(got) == 3 { // m1 twice
						m.Nack()
						continue
					}
					m.Ack()
				case <-time.After(5 * time.Second):
					t.Fatalf("timed out after %v", got)
				}
			}
			want := []string{"m000000", "m000001", "m000001", "m000001", "m000002"}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// TestWindow: a subscription with a window has several messages in flight,
// acks out of order release in order, and a nack comes back before newer
// messages.
func TestWindow(t *testing.T) {
	cfg := testConfig(t, false)
	cfg.Window = 3
	cfg.checkpointEvery = time.Millisecond
	s := open(t, cfg)
	for i := range 6 {
		publish(t, s, "t", msg(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	take := func() *message.Message {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("timed out")
		}
		return nil
	}
	m0, m1, m2 := take(), take(), take()
	none(t, ch) // window full
	// The nack frees the slot only once m1 is queued again, so m1 is next.
	m1.Nack()
	if m := take(); string(m.Payload) != "m000001" {
		t.Fatalf("after nack got %q, want m000001", m.Payload)
	} else {
		m.Ack()
	}
	m2.Ack() // out of order: m0 is still in flight
	// m1 and m2 are done; m0 holds the release of their segment.
	waitFor(t, func() bool { return s.Stats().Entries == 4 })
	m0.Ack()
	rest := payloads(receive(t, ch, 3, 5*time.Second))
	if !slices.Equal(rest, []string{"m000003", "m000004", "m000005"}) {
		t.Fatalf("rest = %v", rest)
	}
	cancel()
	for range ch {
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if st := s.Stats(); st.Entries != 0 {
		t.Fatalf("after reopen %d entries wait, want 0", st.Entries)
	}
	none(t, subscribe(t, s, "t"))
}

// TestReleaseBySegment: acknowledged segments are deleted, the active one
// stays.
func TestReleaseBySegment(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			s := open(t, cfg)
			big := strings.Repeat("x", 4000)
			for i := range 100 {
				m := msg(i)
				m.Payload = append(m.Payload, big...)
				publish(t, s, "t", m)
			}
			dir := filepath.Join(cfg.Dir, lanesDir, "t", "p0")
			segs := func() int {
				n, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
				return len(n)
			}
			if n := segs(); n < 5 {
				t.Fatalf("%d segments, want several", n)
			}
			ch := subscribe(t, s, "t")
			receive(t, ch, 50, 5*time.Second)
			mid := segs()
			receive(t, ch, 50, 5*time.Second)
			// The last ack is processed asynchronously, and released
			// segments are deleted by the reaper: wait for both.
			waitFor(t, func() bool { return s.Stats().Entries == 0 && segs() == 1 })
			if n := segs(); n != 1 || mid <= 1 || mid >= 9 {
				t.Fatalf("segments: %d midway, %d at the end; want fewer midway and 1 at the end", mid, n)
			}
		})
	}
}

// waitFor polls a condition that an asynchronous step makes true; it is
// not a sleep standing in for an event the test could wait on.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitfor.Until(t, 5*time.Second, cond, waitfor.Say("condition not met"))
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestTTLExpiredNeverDelivered(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			cfg := testConfig(t, p.encrypt)
			cfg.clock = clk
			cfg.MaxAge = conf.Duration(3 * time.Hour)
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			s := open(t, cfg)
			publish(t, s, "t", batchMsg(10, 0)) // expires by max_age at +3h
			clk.add(time.Hour)
			for i := range 6 {
				ttl := []string{"1h", "", "30m"}[i%3]
				m := batchMsg(10, uint64(i))
				if ttl != "" {
					m.Metadata.Set(MetaTTL, ttl)
				}
				publish(t, s, "t", m)
			}
			clk.add(time.Hour) // the 1h and 30m ones expire
			publish(t, s, "t", batchMsg(10, 100))
			clk.add(90 * time.Minute) // the first one by max_age
			got := receive(t, subscribe(t, s, "t"), 3, 5*time.Second)
			for _, m := range got {
				if m.Metadata.Get(MetaTTL) != "" {
					t.Errorf("delivered an expired message with ttl %s", m.Metadata.Get(MetaTTL))
				}
			}
			none(t, subscribe(t, s, "t"))
			if d := s.Stats().Dropped[reasonTTL]; d != 50 {
				t.Errorf("ttl drops = %d records, want 50", d)
			}
			if v := counterValue(t, reg, "ferry_spool_dropped_total", "reason", "ttl"); v != 50 {
				t.Errorf("ferry_spool_dropped_total{reason=ttl} = %v, want 50", v)
			}
		})
	}
}

// TestTTLExpiresWithoutSubscriber: the housekeeper expires entries at the
// head, so the gauges do not count what will never be sent.
func TestTTLExpiresWithoutSubscriber(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	cfg := testConfig(t, false)
	cfg.clock = clk
	cfg.checkpointEvery = time.Millisecond
	s := open(t, cfg)
	for i := range 300 { // several sealed segments: expired whole by summary
		m := batchMsg(20, uint64(i))
		m.Metadata.Set(MetaTTL, "1m")
		publish(t, s, "t", m)
	}
	publish(t, s, "t", batchMsg(5, 0))
	clk.add(time.Hour)
	waitFor(t, func() bool { return s.Stats().Records == 5 })
	if d := s.Stats().Dropped[reasonTTL]; d != 300*20 {
		t.Fatalf("ttl drops = %d, want %d", d, 300*20)
	}
}

func counterValue(t testing.TB, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if hasLabel(m, label, value) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.Label {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestQuotaDropOldest(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			cfg.Quota = cfg.SegmentSize // 64KiB
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			s := open(t, cfg)
			const n = 200
			var sizes []int64 // of each entry
			for i := range n {
				m := batchMsg(10, uint64(i*10))
				it, err := s.st.encode(m, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, int64(len(it.buf)))
				publish(t, s, "t", m)
			}
			// The newest entries that fit in the quota are kept.
			keep, used := 0, int64(0)
			for i := n - 1; i >= 0 && used+sizes[i] <= int64(cfg.Quota); i-- {
				used += sizes[i]
				keep++
			}
			st := s.Stats()
			if st.Bytes > int64(cfg.Quota) || st.Entries != int64(keep) {
				t.Fatalf("%d entries, %d bytes wait; want %d entries within %s", st.Entries, st.Bytes, keep, cfg.Quota)
			}
			if d := st.Dropped[reasonQuota]; d != int64(n-keep)*10 {
				t.Fatalf("quota drops = %d records, want %d", d, (n-keep)*10)
			}
			if v := counterValue(t, reg, "ferry_spool_dropped_total", "reason", "quota"); v != float64(n-keep)*10 {
				t.Fatalf("ferry_spool_dropped_total{reason=quota} = %v", v)
			}
			got := receive(t, subscribe(t, s, "t"), keep, 5*time.Second)
			var b bus.Batch
			for i, m := range got {
				b.Reset()
				if err := bus.DecodeBatch(m.Payload, &b); err != nil {
					t.Fatal(err)
				}
				if want := uint64((n - keep + i) * 10); b.Records[0].Seq != want {
					t.Fatalf("message %d starts at seq %d, want %d: not exactly the oldest were dropped", i, b.Records[0].Seq, want)
				}
			}
		})
	}
}

// TestQuotaDropsLowestLaneFirst: drop-oldest takes from the lowest priority.
func TestQuotaDropsLowestLaneFirst(t *testing.T) {
	cfg := testConfig(t, false)
	cfg.Quota = cfg.SegmentSize
	s := open(t, cfg)
	for i := range 20 {
		publish(t, s, "t", batchMsg(10, uint64(i)), withPrio(batchMsg(10, uint64(1000+i)), "1"))
	}
	for i := range 40 {
		publish(t, s, "t", batchMsg(10, uint64(2000+i)))
	}
	for _, l := range s.Stats().Lanes {
		if l.Priority == 1 && l.Entries != 20 {
			t.Fatalf("the high lane lost entries: %+v", l)
		}
	}
}

func withPrio(m *message.Message, p string) *message.Message {
	m.Metadata.Set(MetaPriority, p)
	return m
}

func TestQuotaBlock(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			cfg.Quota = cfg.SegmentSize
			cfg.OnFull = Block
			s := open(t, cfg)
			// Fill up: the publish that does not fit waits until its
			// context ends.
			i := 0
			for ; ; i++ {
				m := batchMsg(10, uint64(i*10))
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				m.SetContext(ctx)
				err := s.Publish("t", m)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			full := i
			// A producer goes on while a consumer drains: nothing is lost.
			const total = 300
			errc := make(chan error, 1)
			go func() {
				for j := full; j < total; j++ {
					if err := s.Publish("t", batchMsg(10, uint64(j*10))); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			got := receive(t, subscribe(t, s, "t"), total, 20*time.Second)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			var b bus.Batch
			for j, m := range got {
				b.Reset()
				if err := bus.DecodeBatch(m.Payload, &b); err != nil || b.Records[0].Seq != uint64(j*10) {
					t.Fatalf("message %d: %v seq %d", j, err, b.Records[0].Seq)
				}
			}
			if d := s.Stats().Dropped[reasonQuota]; d != 0 {
				t.Fatalf("block mode dropped %d", d)
			}
		})
	}
}

func TestWrongKeyFailsAtOpen(t *testing.T) {
	cfg := testConfig(t, true)
	s := open(t, cfg)
	publish(t, s, "t", msg(1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.KeyFile = writeKey(t, t.TempDir())
	if _, err := Open(other, nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with another key: %v, want ErrWrongKey", err)
	}
	none := cfg
	none.KeyFile = ""
	if _, err := Open(none, nil); !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("open without key: %v, want ErrKeyRequired", err)
	}
	// The right key, as 32 raw bytes this time, still reads it.
	raw, err := readKey(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	rawPath := filepath.Join(t.TempDir(), "raw")
	if err := os.WriteFile(rawPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = rawPath
	s = open(t, cfg)
	receive(t, subscribe(t, s, "t"), 1, 5*time.Second)
}

// TestEncryptedAtRest: the payload is not on disk in clear.
func TestEncryptedAtRest(t *testing.T) {
	cfg := testConfig(t, true)
	s := open(t, cfg)
	m := msg(1)
	m.Payload = []byte("secret-reading-12345")
	publish(t, s, "t", m)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, lanesDir, "t", "p0", "*"+segExt))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "secret-reading") {
			t.Fatalf("%s holds the payload in clear", f)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "short.key")
	if err := os.WriteFile(bad, []byte("abcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Dir: dir}, nil},
		{"everything wrong", Config{
			Fsync: "sometimes", OnFull: "panic", SegmentSize: 1 << 20, Quota: 1 << 10,
			KeyFile: filepath.Join(dir, "missing.key"), Window: -1,
		}, []string{
			`dir: is required`,
			`quota: 1KiB is below one segment (segment_size 1MiB)`,
			`on_full: "panic" is not one of drop-oldest, block`,
			`fsync: "sometimes" is not one of always, interval, never`,
			`window: -1 is outside 1..4096`,
			`key_file: cannot read key`,
		}},
		{"short key", Config{Dir: dir, KeyFile: bad}, []string{"key_file: key file " + bad + " holds 4 bytes; want 32 raw bytes or 64 hex characters"}},
		{"tiny segment", Config{Dir: dir, SegmentSize: 1000}, []string{"segment_size: 1000B is outside 64KiB..1GiB"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.SetDefaults()
			err := c.cfg.Validate()
			var got []string
			for _, e := range conf.Flatten(err) {
				var fe *conf.FieldError
				if !errors.As(e, &fe) || !errors.Is(e, conf.ErrInvalidConfig) {
					t.Errorf("%v is not a conf.FieldError", e)
				}
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("problem %d = %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestInspect(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			s := open(t, cfg)
			for i := range 30 {
				publish(t, s, "a/b", withPrio(batchMsg(10, uint64(i)), []string{"0", "2"}[i%2]))
			}
			publish(t, s, "c", batchMsg(3, 0))
			receive(t, subscribe(t, s, "a/b"), 5, 5*time.Second)
			waitFor(t, func() bool { return s.Stats().Entries == 26 })
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			want := s.Stats()
			got, err := Inspect(cfg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Entries != 26 || got.Records != 25*10+3 || got.Encrypted != p.encrypt || len(got.Lanes) != 3 {
				t.Fatalf("inspect: %+v", got)
			}
			if got.Bytes != want.Bytes || got.Oldest.IsZero() {
				t.Fatalf("inspect bytes %d oldest %v; open spool said %d", got.Bytes, got.Oldest, want.Bytes)
			}
			l := got.Lanes[0]
			if l.Topic != "a/b" || l.Priority != 2 || l.Entries != 10 {
				t.Fatalf("first lane %+v, want a/b p2 with 10 entries", l)
			}
		})
	}
}

func TestGauges(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	cfg := testConfig(t, false)
	cfg.clock = clk
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s := open(t, cfg)
	publish(t, s, "t", batchMsg(500, 0), batchMsg(250, 500))
	clk.add(42 * time.Second)
	if v := counterValue(t, reg, "ferry_spool_records", "sink", "test"); v != 750 {
		t.Errorf("records = %v", v)
	}
	if v := counterValue(t, reg, "ferry_spool_bytes", "sink", "test"); v != float64(s.Stats().Bytes) || v == 0 {
		t.Errorf("bytes = %v", v)
	}
	if v := counterValue(t, reg, "ferry_spool_oldest_seconds", "sink", "test"); v != 42 {
		t.Errorf("oldest = %v", v)
	}
	// A second spool of the same sink (after a reload) registers again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if v := counterValue(t, reg, "ferry_spool_records", "sink", "test"); v != 750 {
		t.Errorf("records after reopen = %v", v)
	}
}

func TestSecondProcessLockedOut(t *testing.T) {
	cfg := testConfig(t, false)
	s := open(t, cfg)
	other := cfg
	other.Window = 5
	if _, err := Open(other, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("open with another config: %v", err)
	}
	if _, err := lockDir(filepath.Join(cfg.Dir, lockName)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	_ = s
}

func TestPublishErrors(t *testing.T) {
	s := open(t, testConfig(t, false))
	if err := s.Publish("t", msg(1, MetaPriority, "high")); !errors.Is(err, ErrBadMetadata) {
		t.Errorf("bad priority: %v", err)
	}
	if err := s.Publish("t", msg(1, MetaTTL, "soon")); !errors.Is(err, ErrBadMetadata) {
		t.Errorf("bad ttl: %v", err)
	}
	big := msg(1)
	big.Payload = make([]byte, 70<<10)
	if err := s.Publish("t", big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish("t", msg(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := s.Subscribe(context.Background(), "t"); !errors.Is(err, ErrClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
}

// TestAppendsGoOnDuringSlowRead: while a drain's read at the cursor is
// blocked (a slow SD card), Publish, the writer's commits and Stats go on;
// once the read returns, everything comes out in order.
func TestAppendsGoOnDuringSlowRead(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			var blocked atomic.Bool
			blocked.Store(true)
			cfg.hooks = &hooks{read: func(string, int64) {
				if blocked.Load() {
					select {
					case entered <- struct{}{}:
					default:
					}
					<-release
				}
			}}
			s := open(t, cfg)
			for i := range 10 {
				publish(t, s, "t", msg(i))
			}
			ch := subscribe(t, s, "t")
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the drain never read")
			}
			done := make(chan error, 1)
			go func() {
				for i := 10; i < 110; i++ {
					if err := s.Publish("t", msg(i)); err != nil {
						done <- err
						return
					}
				}
				_ = s.Stats()
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				close(release)
				t.Fatal("Publish or Stats waited for a blocked read")
			}
			if n := s.Stats().Entries; n != 110 {
				t.Fatalf("%d entries wait, want 110", n)
			}
			blocked.Store(false)
			close(release)
			got := payloads(receive(t, ch, 110, 5*time.Second))
			for i, g := range got {
				if g != fmt.Sprintf("m%06d", i) {
					t.Fatalf("message %d is %s", i, g)
				}
			}
			none(t, ch)
		})
	}
}
