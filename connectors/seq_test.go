package connectors

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
)

// newProcess forgets every store under dataDir, as a restart of the
// process would; what is on disk stays as it is.
func newProcess(dataDir string) {
	seqStores.Lock()
	defer seqStores.Unlock()
	dir := filepath.Join(dataDir, "seq")
	for p := range seqStores.open {
		if filepath.Dir(p) == dir {
			delete(seqStores.open, p)
		}
	}
	delete(seqStores.fresh, dir)
}

// capture is a Publisher that keeps what it is given, decoded.
type capture struct {
	mu      sync.Mutex
	records []bus.Record
}

func (c *capture) Publish(_ string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		var b bus.Batch
		if err := bus.DecodeBatch(m.Payload, &b); err != nil {
			return err
		}
		c.records = append(c.records, b.Records...)
	}
	return nil
}

func (c *capture) Close() error { return nil }

func (c *capture) take() []bus.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.records
	c.records = nil
	return r
}

func newSeqEnv(t *testing.T, dataDir string, pub message.Publisher) *Env {
	t.Helper()
	env, err := NewEnv(EnvConfig{Name: "m", DataDir: dataDir, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func batchOf(n int) *bus.Batch {
	b := &bus.Batch{}
	for i := range n {
		b.Records = append(b.Records, bus.Record{Tag: "t" + strconv.Itoa(i), Value: bus.Long(int64(i))})
	}
	return b
}

func emit(t *testing.T, env *Env, n int) {
	t.Helper()
	if err := env.Emit(t.Context(), batchOf(n)); err != nil {
		t.Fatal(err)
	}
}

func shutdown(t *testing.T, env *Env) {
	t.Helper()
	if err := env.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestSeqCleanRestartsContinueWithoutGap(t *testing.T) {
	dir := t.TempDir()
	pub := &capture{}
	for run := range 4 { // the first start and three clean restarts
		env := newSeqEnv(t, dir, pub)
		if o, ok := env.SeqOpened(); !ok || o.Crash || o.Rebuilt {
			t.Fatalf("run %d opened %+v", run, o)
		}
		emit(t, env, 3)
		emit(t, env, 2)
		shutdown(t, env)
		emit(t, env, 1) // after a clean close: the module restarted in-process
		shutdown(t, env)
		newProcess(dir)
	}
	recs := pub.take()
	if len(recs) != 4*6 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i) || r.Attrs[AttrSeqGap] != "" {
			t.Fatalf("record %d: seq %d attrs %v; want seq %d, no gap", i, r.Seq, r.Attrs, i)
		}
	}
}

func TestSeqCrashSkipsAtMostOneBlockAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	pub := &capture{}
	env := newSeqEnv(t, dir, pub)
	emit(t, env, 5)
	newProcess(dir) // no Shutdown: a crash

	// A second crash before anything was emitted keeps the announcement.
	env = newSeqEnv(t, dir, pub)
	if o, _ := env.SeqOpened(); !o.Crash {
		t.Fatalf("crash not detected: %+v", o)
	}
	newProcess(dir)

	env = newSeqEnv(t, dir, pub)
	attrs := map[string]string{"shared": "x"}
	b := batchOf(3)
	for i := range b.Records {
		b.Records[i].Attrs = attrs
	}
	if err := env.Emit(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := env.Emit(t.Context(), b); err != nil { // a reused batch
		t.Fatal(err)
	}
	shutdown(t, env)
	if len(attrs) != 1 || b.Records[0].Attrs[AttrSeqGap] != "" {
		t.Fatalf("the caller's attrs were changed: %v %v", attrs, b.Records[0].Attrs)
	}

	recs := pub.take()
	last, first := recs[4].Seq, recs[5]
	if skipped := first.Seq - last - 1; last != 4 || skipped == 0 || skipped > seqBlock {
		t.Fatalf("before the crash up to %d, after it %d: want a gap of 1..%d", last, first.Seq, seqBlock)
	}
	from, _ := strconv.ParseUint(first.Attrs[AttrSeqGapFrom], 10, 64)
	to, _ := strconv.ParseUint(first.Attrs[AttrSeqGapTo], 10, 64)
	if first.Attrs[AttrSeqGap] != SeqGapCrash || from > last+1 || to != first.Seq || first.Attrs["shared"] != "x" {
		t.Fatalf("first record after the crash: seq %d attrs %v; want crash from ≤ %d to %d", first.Seq, first.Attrs, last+1, first.Seq)
	}
	for i, r := range recs[5:] {
		if r.Seq != first.Seq+uint64(i) {
			t.Fatalf("after the crash: seq %d at %d, want %d", r.Seq, i, first.Seq+uint64(i))
		}
		if i > 0 && r.Attrs[AttrSeqGap] != "" {
			t.Fatalf("record %d also announces a gap: %v", r.Seq, r.Attrs)
		}
	}
}

func TestSeqWriteFailureHandsOutNothingAndRecovers(t *testing.T) {
	dir := t.TempDir()
	pub := &capture{}
	env := newSeqEnv(t, dir, pub)
	s := env.seq.(*Sequencer)
	var fail sync.Map // set: the write fails
	s.mu.Lock()
	s.write = func(path string, data []byte) error {
		if _, ok := fail.Load("on"); ok {
			return syscall.ENOSPC
		}
		return writeDurable(path, data)
	}
	s.mu.Unlock()

	emit(t, env, 2) // reserves the first block
	if _, err := s.Reserve(seqBlock - 2); err != nil {
		t.Fatal(err)
	}
	fail.Store("on", true)
	for range 3 {
		err := env.Emit(t.Context(), batchOf(4))
		if !errors.Is(err, ErrSeqNotDurable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("emit on a full disk: %v", err)
		}
	}
	if got := env.State().Snapshot(); !strings.Contains(got.LastError, "not durable") || got.Phase != PhaseBlocked {
		t.Fatalf("state %+v, want blocked with the cause", got)
	}
	if n := len(pub.take()); n != 2 {
		t.Fatalf("%d records published, want only the 2 emitted before the failure", n)
	}
	fail.Delete("on")
	emit(t, env, 4)
	if p := env.State().Phase(); p != PhaseUp {
		t.Fatalf("after recovery the source is %s, want up", p)
	}
	recs := pub.take()
	if recs[0].Seq != seqBlock {
		t.Fatalf("after recovery seq %d, want %d: the failed reservations handed nothing out", recs[0].Seq, seqBlock)
	}

	// A crash now must not repeat anything handed out.
	newProcess(dir)
	s2, _ := OpenSequencer(dir, "m", nil)
	next, err := s2.Reserve(1)
	if err != nil || next <= recs[3].Seq {
		t.Fatalf("after a crash: %d, %v; want above %d", next, err, recs[3].Seq)
	}
}

func TestSeqUnwritableAtStartBuildsTheEnvAndWaits(t *testing.T) {
	dir := t.TempDir()
	// A regular file where the seq directory should be: no store can be
	// read or written there (as root, unlike a chmod).
	if err := os.WriteFile(filepath.Join(dir, "seq"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := &capture{}
	env := newSeqEnv(t, dir, pub)
	if err := env.Emit(t.Context(), batchOf(1)); !errors.Is(err, ErrSeqNotDurable) {
		t.Fatalf("emit without a store: %v", err)
	}
	if len(pub.take()) != 0 {
		t.Fatal("published without a durable reservation")
	}
	if err := os.Remove(filepath.Join(dir, "seq")); err != nil {
		t.Fatal(err)
	}
	emit(t, env, 1)
	recs := pub.take()
	if len(recs) != 1 || recs[0].Attrs[AttrSeqGap] != SeqGapEpoch {
		t.Fatalf("after the store came back: %+v", recs)
	}
	shutdown(t, env)
}

func TestSeqDamagedStoreIsRebuilt(t *testing.T) {
	valid := seqFile{next: 10, reserved: 100}.encode()
	flipped := bytes.Clone(valid)
	flipped[len("ferry-seq/2 open next=")] = '9'
	cases := map[string][]byte{
		"zeroed":    make([]byte, 64),
		"empty":     {},
		"garbage":   []byte("\x8f\x01hello"),
		"bit flip":  flipped,
		"torn":      valid[:len(valid)/2],
		"bad state": []byte("ferry-seq/2 crc=00000000\n"),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seq", "m")
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			before := uint64(time.Now().UnixMicro())
			s, o := OpenSequencer(dir, "m", slog.New(slog.NewTextHandler(&log, nil)))
			if !o.Rebuilt || o.Cause == "" || o.Next < before {
				t.Fatalf("opened %+v, want rebuilt at ≥ %d", o, before)
			}
			if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "new epoch") {
				t.Fatalf("log: %s", log.String())
			}
			first, gap, err := s.ReserveGap(2)
			if err != nil || first != o.Next || gap == nil || gap.Kind != SeqGapEpoch || gap.To != first {
				t.Fatalf("first after rebuild: %d %+v %v", first, gap, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			newProcess(dir)
			s2, o2 := OpenSequencer(dir, "m", nil)
			if o2.Rebuilt || o2.Crash || o2.Next != first+2 {
				t.Fatalf("restart after the rebuild: %+v, want next %d", o2, first+2)
			}
			if _, gap, _ := s2.ReserveGap(1); gap != nil {
				t.Fatalf("the epoch was announced twice: %+v", gap)
			}
		})
	}
}

func TestSeqOpenStates(t *testing.T) {
	t.Run("fresh data dir starts at 0", func(t *testing.T) {
		dir := t.TempDir()
		a, o := OpenSequencer(dir, "a", nil)
		_, ob := OpenSequencer(dir, "b", nil) // the seq dir now exists, but this process made it
		if o.Next != 0 || o.Rebuilt || ob.Next != 0 || ob.Rebuilt {
			t.Fatalf("fresh: %+v %+v", o, ob)
		}
		if _, gap, _ := a.ReserveGap(1); gap != nil {
			t.Fatalf("first start announced %+v", gap)
		}
	})
	t.Run("missing file in a used data dir starts an epoch", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "seq"), 0o750); err != nil {
			t.Fatal(err)
		}
		s, o := OpenSequencer(dir, "m", nil)
		if !o.Rebuilt || o.Cause != "missing" || o.Next < 1e15 {
			t.Fatalf("missing: %+v", o)
		}
		if _, gap, _ := s.ReserveGap(1); gap == nil || gap.Kind != SeqGapEpoch {
			t.Fatalf("missing: gap %+v", gap)
		}
	})
	t.Run("old plain-number format", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "seq"), 0o750)
		if err := os.WriteFile(filepath.Join(dir, "seq", "m"), []byte("2097152\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, o := OpenSequencer(dir, "m", nil)
		first, gap, err := s.ReserveGap(1)
		if err != nil || o.Rebuilt || first != 2097152 || gap == nil || *gap != (SeqGap{SeqGapCrash, seqBlock, 2097152}) {
			t.Fatalf("legacy: %+v first %d gap %+v %v", o, first, gap, err)
		}
	})
	t.Run("a damaged store keeps above a leftover reservation", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "seq"), 0o750)
		os.WriteFile(filepath.Join(dir, "seq", "m"), []byte("\x00\x00"), 0o600)
		high := uint64(time.Now().UnixMicro()) + 1<<40
		os.WriteFile(filepath.Join(dir, "seq", "m.tmp"), seqFile{next: high - 5, reserved: high}.encode(), 0o600)
		if _, o := OpenSequencer(dir, "m", nil); o.Next != high {
			t.Fatalf("next %d, want %d", o.Next, high)
		}
	})
	t.Run("a module rebuilt in-process shares the store", func(t *testing.T) {
		dir := t.TempDir()
		a, _ := OpenSequencer(dir, "m", nil)
		b, _ := OpenSequencer(dir, "m", nil)
		x, _ := a.Reserve(seqBlock)
		y, _ := b.Reserve(1)
		if a != b || y != x+seqBlock {
			t.Fatalf("old instance at %d, new one at %d", x, y)
		}
	})
}

func TestSeqFileRoundTrip(t *testing.T) {
	for _, f := range []seqFile{
		{clean: true, next: 7},
		{next: 1, reserved: 1 << 20},
		{next: 1, reserved: 9, gap: &SeqGap{Kind: SeqGapCrash, From: 3}},
		{clean: true, next: 1 << 62, gap: &SeqGap{Kind: SeqGapEpoch}},
	} {
		got, err := parseSeqFile(f.encode())
		if err != nil || got.clean != f.clean || got.next != f.next || got.reserved != f.reserved ||
			(got.gap == nil) != (f.gap == nil) || got.gap != nil && *got.gap != *f.gap {
			t.Fatalf("%s: %+v %v", f.encode(), got, err)
		}
	}
}

func TestSeqConcurrentReservationsNeverOverlap(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSequencer(dir, "m", nil)
	const workers, each = 4, 200
	firsts := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				f, err := s.Reserve(seqBlock / 64)
				if err != nil {
					t.Error(err)
					return
				}
				firsts <- f
			}
		})
	}
	wg.Wait()
	close(firsts)
	seen := map[uint64]bool{}
	for f := range firsts {
		if seen[f] || f%(seqBlock/64) != 0 {
			t.Fatalf("first %d handed out twice or misaligned", f)
		}
		seen[f] = true
	}
}

// BenchmarkSequencerReserve is the cost per batch of 100 records, the
// store's fsynced writes (one per 10,486 batches) included.
func BenchmarkSequencerReserve(b *testing.B) {
	s, _ := OpenSequencer(b.TempDir(), "m", nil)
	for b.Loop() {
		if _, _, err := s.ReserveGap(100); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSequencerStoreWrite is one durable write of the store: the
// price of each reservation, of a clean shutdown and of a restart.
func BenchmarkSequencerStoreWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "seq", "m")
	data := seqFile{next: 1 << 40, reserved: 1<<40 + seqBlock}.encode()
	for b.Loop() {
		if err := writeDurable(path, data); err != nil {
			b.Fatal(err)
		}
	}
}
