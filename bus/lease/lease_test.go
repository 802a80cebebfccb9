package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/natstest"
)

// Short leases keep the suite quick; the bounds asserted below are loose
// enough for a loaded two-core machine running the race detector.
const (
	testLease     = 800 * time.Millisecond
	testHeartbeat = 200 * time.Millisecond
	testKey       = "press1"
)

// takeoverBound is how long after an owner's crash a standby must run the
// source: the key expires Lease after the last renewal, a standby tries
// every heartbeat, plus slack for the machine.
func takeoverBound(lease, hb time.Duration) time.Duration { return lease + 3*hb + 2*time.Second }

// node is one ferry instance: its own connection, registry and Elector.
type node struct {
	name   string
	cfg    Config
	nc     *nats.Conn
	reg    *prometheus.Registry
	e      *Elector
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
}

func newNode(t *testing.T, s *natstest.Server, name string, lease, hb time.Duration) *node {
	t.Helper()
	n := &node{name: name, cfg: Config{Instance: name, Lease: lease, Heartbeat: hb}}
	n.connect(t, s)
	return n
}

// connect opens a new connection and Elector, as a restarted process would.
func (n *node) connect(t *testing.T, s *natstest.Server) {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.nc, n.reg = nc, prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	if n.e, err = New(ctx, js, n.cfg, n.reg, logger); err != nil {
		t.Fatal(err)
	}
}

// run starts Run in a goroutine; it is stopped when the test ends.
func (n *node) run(t *testing.T, key string, work func(context.Context, *Term)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	done := make(chan struct{})
	n.cancel, n.done = cancel, done
	go func() {
		defer close(done)
		n.e.Run(ctx, key, work)
	}()
	t.Cleanup(func() { stopRun(t, cancel, done) })
}

// stop cancels Run and waits for it to return.
func (n *node) stop(t *testing.T) {
	t.Helper()
	stopRun(t, n.cancel, n.done)
}

func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Error("Run did not return within 30s of its context ending")
	}
}

// crash drops the node's connection without stopping Run first, as a
// killed process or a cut cable would look to the others.
func (n *node) crash() { n.nc.Close() }

func (n *node) lost(reason string) float64 {
	return testutil.ToFloat64(n.e.m.lost.WithLabelValues(testKey, reason))
}

// event is a work function starting or seeing its context end.
type event struct {
	who   string
	start bool
	at    time.Time
	term  *Term
}

// probe wraps work functions: it records their events and counts work
// running at the same time, across all nodes.
type probe struct {
	running  atomic.Int32
	overlaps atomic.Int32

	mu  sync.Mutex
	evs []event
}

func (p *probe) work(who string, body func(context.Context, *Term)) func(context.Context, *Term) {
	return func(ctx context.Context, t *Term) {
		if p.running.Add(1) > 1 {
			p.overlaps.Add(1)
		}
		p.record(event{who: who, start: true, at: time.Now(), term: t})
		if body != nil {
			body(ctx, t)
		}
		<-ctx.Done()
		end := time.Now()
		p.running.Add(-1)
		p.record(event{who: who, at: end, term: t})
	}
}

func (p *probe) record(ev event) {
	p.mu.Lock()
	p.evs = append(p.evs, ev)
	p.mu.Unlock()
}

// find returns the first event after index from that matches.
func (p *probe) find(from int, match func(event) bool) (event, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.evs); i++ {
		if match(p.evs[i]) {
			return p.evs[i], i, true
		}
	}
	return event{}, 0, false
}

// await waits for the first event after index from that matches.
func (p *probe) await(t *testing.T, from int, timeout time.Duration, what string, match func(event) bool) (event, int) {
	t.Helper()
	var ev event
	var i int
	eventually(t, timeout, what, func() bool {
		var ok bool
		ev, i, ok = p.find(from, match)
		return ok
	})
	return ev, i
}

func startOf(who string) func(event) bool {
	return func(ev event) bool { return ev.start && (who == "" || ev.who == who) }
}

func endOf(who string) func(event) bool {
	return func(ev event) bool { return !ev.start && ev.who == who }
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func other(nodes map[string]*node, name string) *node {
	for n, nd := range nodes {
		if n != name {
			return nd
		}
	}
	return nil
}

func pair(t *testing.T, s *natstest.Server, lease, hb time.Duration) map[string]*node {
	t.Helper()
	return map[string]*node{"a": newNode(t, s, "a", lease, hb), "b": newNode(t, s, "b", lease, hb)}
}

// TestOneOwnerAtATime: of two instances exactly one runs the source, both
// report who that is, and handing over several times never runs the
// source twice at once.
func TestOneOwnerAtATime(t *testing.T) {
	s := natstest.Start(t)
	nodes := pair(t, s, testLease, testHeartbeat)
	p := &probe{}
	for name, n := range nodes {
		n.run(t, testKey, p.work(name, nil))
	}
	ev, i := p.await(t, 0, 10*time.Second, "a first owner", startOf(""))
	for handover := range 3 {
		owner, standby := nodes[ev.who], other(nodes, ev.who)
		if st := owner.e.Status(testKey); !st.Mine || st.Owner != owner.name || st.Since.IsZero() {
			t.Errorf("owner %s reports %+v", owner.name, st)
		}
		eventually(t, 5*time.Second, "the standby to see the owner", func() bool {
			st := standby.e.Status(testKey)
			return st.Owner == owner.name && !st.Mine && st.Since.IsZero()
		})
		if got := testutil.ToFloat64(owner.e.m.owner.WithLabelValues(testKey)); got != 1 {
			t.Errorf("ferry_lease_owner of the owner = %v, want 1", got)
		}
		if got := testutil.ToFloat64(standby.e.m.owner.WithLabelValues(testKey)); got != 0 {
			t.Errorf("ferry_lease_owner of the standby = %v, want 0", got)
		}

		owner.stop(t)
		ev, i = p.await(t, i+1, 10*time.Second, fmt.Sprintf("handover %d to %s", handover, standby.name), startOf(standby.name))
		owner.run(t, testKey, p.work(owner.name, nil))
	}
	if n := p.overlaps.Load(); n != 0 {
		t.Fatalf("work ran on two instances at once %d times", n)
	}
	for _, n := range nodes {
		if st := n.e.Status(testKey); st.Takeovers < 1 {
			t.Errorf("%s: takeovers = %d, want at least 1 after the handovers", n.name, st.Takeovers)
		}
	}
}

// TestCrashedOwnerFencesItself: an owner that loses its connection stops
// its work before its lease can expire, and the standby takes over once
// it has.
func TestCrashedOwnerFencesItself(t *testing.T) {
	s := natstest.Start(t)
	nodes := pair(t, s, testLease, testHeartbeat)
	p := &probe{}
	for name, n := range nodes {
		n.run(t, testKey, p.work(name, nil))
	}
	first, i := p.await(t, 0, 10*time.Second, "a first owner", startOf(""))
	owner, standby := nodes[first.who], other(nodes, first.who)

	crashed := time.Now()
	owner.crash()

	end, _ := p.await(t, i+1, takeoverBound(testLease, testHeartbeat), "the crashed owner's work to end", endOf(owner.name))
	if d := end.at.Sub(crashed); d >= testLease {
		t.Errorf("the crashed owner's work ended %s after the crash; it must end within the lease (%s)", d, testLease)
	}
	took, _ := p.await(t, i+1, takeoverBound(testLease, testHeartbeat), "the standby to take over", startOf(standby.name))
	if d := took.at.Sub(crashed); d > takeoverBound(testLease, testHeartbeat) {
		t.Errorf("takeover %s after the crash, want within %s", d, takeoverBound(testLease, testHeartbeat))
	}
	if !end.at.Before(took.at) {
		t.Errorf("the standby started (%s) before the crashed owner stopped (%s)", took.at.Format(time.StampMicro), end.at.Format(time.StampMicro))
	}
	if n := p.overlaps.Load(); n != 0 {
		t.Errorf("work ran on two instances at once %d times", n)
	}
	eventually(t, 5*time.Second, "the crashed owner to count the loss", func() bool { return owner.lost(reasonExpired) == 1 })
	if st := owner.e.Status(testKey); st.Mine {
		t.Errorf("the crashed owner still reports %+v", st)
	}
	if err := context.Cause(first.term.Context()); !errors.Is(err, errExpired) {
		t.Errorf("crashed term's cause = %v, want %v", err, errExpired)
	}
}

// TestGracefulHandover: an owner that stops deletes its lease, so the
// standby takes over in about a heartbeat instead of a lease.
func TestGracefulHandover(t *testing.T) {
	const lease = 5 * time.Second
	s := natstest.Start(t)
	nodes := pair(t, s, lease, testHeartbeat)
	p := &probe{}
	for name, n := range nodes {
		n.run(t, testKey, p.work(name, nil))
	}
	first, i := p.await(t, 0, 10*time.Second, "a first owner", startOf(""))
	owner, standby := nodes[first.who], other(nodes, first.who)

	stopped := time.Now()
	owner.stop(t) // returns once work has returned and the lease is deleted
	took, _ := p.await(t, i+1, lease, "the standby to take over", startOf(standby.name))
	if d := took.at.Sub(stopped); d > lease/2 {
		t.Errorf("takeover %s after a graceful stop; want well below the lease (%s)", d, lease)
	}
	if end, _, ok := p.find(i+1, endOf(owner.name)); !ok || !end.at.Before(took.at) {
		t.Errorf("the old owner's work did not end before the takeover")
	}
	if got := owner.lost(reasonShutdown); got != 1 {
		t.Errorf("lost{reason=shutdown} = %v, want 1", got)
	}
	if st := owner.e.Status(testKey); st.Mine || st.Owner == owner.name {
		t.Errorf("stopped owner reports %+v", st)
	}
}

// seqRecorder collects the numbers every term hands out, per term in the
// order the terms started.
type seqRecorder struct {
	mu    sync.Mutex
	terms []*termNumbers
}

type termNumbers struct {
	who    string
	ranges [][2]uint64 // first, n
}

func (r *seqRecorder) begin(who string) *termNumbers {
	r.mu.Lock()
	defer r.mu.Unlock()
	tn := &termNumbers{who: who}
	r.terms = append(r.terms, tn)
	return tn
}

func (r *seqRecorder) add(tn *termNumbers, first uint64, n int) {
	r.mu.Lock()
	tn.ranges = append(tn.ranges, [2]uint64{first, uint64(n)})
	r.mu.Unlock()
}

// count is how many numbers terms from index from on have handed out.
func (r *seqRecorder) count(from int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, tn := range r.terms[min(from, len(r.terms)):] {
		for _, rg := range tn.ranges {
			total += int(rg[1])
		}
	}
	return total
}

// max is the highest number handed out.
func (r *seqRecorder) max() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hi uint64
	for _, tn := range r.terms {
		for _, rg := range tn.ranges {
			hi = max(hi, rg[0]+rg[1]-1)
		}
	}
	return hi
}

func (r *seqRecorder) numTerms() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.terms)
}

// body reserves numbers from two goroutines until the term ends, as a
// source's pollers would.
func (r *seqRecorder) body(who string) func(context.Context, *Term) {
	return func(ctx context.Context, t *Term) {
		tn := r.begin(who)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for ctx.Err() == nil {
					n := 1 + rand.IntN(20)
					first, err := t.Reserve(n)
					if errors.Is(err, ErrFenced) {
						return
					}
					if err == nil {
						r.add(tn, first, n)
					}
					select { // pace the source: about 2000 numbers a second
					case <-ctx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
		}
		wg.Wait()
	}
}

// check fails the test if any number was handed out twice, or if a term's
// numbers are not all above those of the terms before it.
func (r *seqRecorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var all [][2]uint64
	var prevMax uint64
	prevWho := ""
	for i, tn := range r.terms {
		if len(tn.ranges) == 0 {
			continue
		}
		lo, hi := uint64(1<<64-1), uint64(0)
		for _, rg := range tn.ranges {
			lo, hi = min(lo, rg[0]), max(hi, rg[0]+rg[1]-1)
		}
		if lo <= prevMax {
			t.Errorf("term %d (%s) handed out %d, not above %d handed out by the term before (%s)", i, tn.who, lo, prevMax, prevWho)
		}
		prevMax, prevWho = hi, tn.who
		all = append(all, tn.ranges...)
	}
	slices.SortFunc(all, func(a, b [2]uint64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	for i := 1; i < len(all); i++ {
		if prev := all[i-1]; prev[0]+prev[1] > all[i][0] {
			t.Fatalf("number %d handed out twice (blocks %v and %v)", all[i][0], prev, all[i])
		}
	}
	if len(all) == 0 {
		t.Fatal("no numbers handed out")
	}
}

// TestSequenceAcrossFailovers: numbers never repeat and grow from term to
// term across graceful and crash failovers, and a term that has been
// taken over gets ErrFenced.
func TestSequenceAcrossFailovers(t *testing.T) {
	s := natstest.Start(t)
	nodes := pair(t, s, testLease, testHeartbeat)
	p, rec := &probe{}, &seqRecorder{}
	for name, n := range nodes {
		n.run(t, testKey, p.work(name, rec.body(name)))
	}
	ev, i := p.await(t, 0, 10*time.Second, "a first owner", startOf(""))
	seen := 0 // terms recorded before the current one
	for round := range 4 {
		owner, standby := nodes[ev.who], other(nodes, ev.who)
		eventually(t, 10*time.Second, "the owner to hand out numbers", func() bool {
			return rec.numTerms() > seen && rec.count(seen) >= 100
		})
		seen = rec.numTerms()
		old := ev.term
		if round%2 == 0 {
			owner.stop(t)
		} else {
			owner.crash()
		}
		ev, i = p.await(t, i+1, takeoverBound(testLease, testHeartbeat), "the standby to take over", startOf(standby.name))
		if _, err := old.Reserve(1); !errors.Is(err, ErrFenced) {
			t.Errorf("round %d: Reserve of the taken-over term = %v, want ErrFenced", round, err)
		}
		if round%2 == 1 {
			owner.stop(t)
			owner.connect(t, s) // a restarted process
		}
		owner.run(t, testKey, p.work(owner.name, rec.body(owner.name)))
	}
	eventually(t, 10*time.Second, "the last owner to hand out numbers", func() bool {
		return rec.numTerms() > seen && rec.count(seen) >= 100
	})
	for _, n := range nodes {
		n.stop(t)
	}
	if n := p.overlaps.Load(); n != 0 {
		t.Errorf("work ran on two instances at once %d times", n)
	}
	rec.check(t)
}

// TestServerRestart: after a NATS server restart under a running owner,
// some instance runs the source again by itself, reserving new blocks, and
// numbers stay unique. A brief outage may leave the owner in place; one
// longer than the lease makes it fence itself first.
func TestServerRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		long bool
	}{{"brief", false}, {"longer than the lease", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := natstest.Start(t)
			nodes := pair(t, s, testLease, testHeartbeat)
			p, rec := &probe{}, &seqRecorder{}
			for name, n := range nodes {
				n.run(t, testKey, p.work(name, rec.body(name)))
			}
			ev, i := p.await(t, 0, 10*time.Second, "a first owner", startOf(""))
			eventually(t, 10*time.Second, "the owner to hand out numbers", func() bool { return rec.count(0) >= 100 })

			s.Stop()
			// Numbers at or above the end of the owner's blocks when the
			// server went away can only come from a block reserved after it
			// came back.
			ev.term.mu.Lock()
			mark := ev.term.end
			ev.term.mu.Unlock()
			if tc.long {
				p.await(t, i+1, takeoverBound(testLease, testHeartbeat), "the owner to fence itself", endOf(ev.who))
				eventually(t, 5*time.Second, "the loss to be counted as expired", func() bool {
					return nodes[ev.who].lost(reasonExpired) == 1
				})
			}
			s.Restart()

			eventually(t, 2*takeoverBound(testLease, testHeartbeat)+5*time.Second, "an owner reserving numbers after the restart", func() bool {
				owners := 0
				for _, n := range nodes {
					if n.e.Status(testKey).Mine {
						owners++
					}
				}
				return owners == 1 && rec.max() >= mark
			})
			for _, n := range nodes {
				n.stop(t)
			}
			if n := p.overlaps.Load(); n != 0 {
				t.Errorf("work ran on two instances at once %d times", n)
			}
			rec.check(t)
		})
	}
}

// TestReserveFencedByNewerTerm drives two terms of one key directly: once
// the newer one has reserved, the older one may finish its own block but
// cannot reserve another, and its context ends.
func TestReserveFencedByNewerTerm(t *testing.T) {
	s := natstest.Start(t)
	n := newNode(t, s, "a", testLease, testHeartbeat)
	r := &runner{e: n.e, key: testKey, kvKey: kvKey(testKey)}
	term := func() *Term {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		tm := newTerm(ctx, cancel, r)
		if err := tm.reserveFirst(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		return tm
	}

	old := term()
	a, err := old.Reserve(10)
	if err != nil {
		t.Fatal(err)
	}
	if now := uint64(time.Now().UnixMicro()); a > now || a < now-uint64(time.Minute.Microseconds()) {
		t.Errorf("the first number ever is %d, want about the Unix time in microseconds (%d)", a, now)
	}
	newer := term()
	b, err := old.Reserve(1) // still inside its own block
	if err != nil || b != a+10 {
		t.Errorf("Reserve inside the old block = %d, %v; want %d", b, err, a+10)
	}
	_, err = old.Reserve(maxBlock + 1) // needs a new block
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("Reserve past the old block = %v, want ErrFenced", err)
	}
	if !errors.Is(context.Cause(old.Context()), ErrFenced) {
		t.Errorf("the fenced term's context: cause %v, want ErrFenced", context.Cause(old.Context()))
	}
	if _, err := old.Reserve(1); !errors.Is(err, ErrFenced) {
		t.Errorf("Reserve after fencing = %v, want ErrFenced", err)
	}
	c, err := newer.Reserve(5)
	if err != nil {
		t.Fatal(err)
	}
	if c < a+minBlock {
		t.Errorf("the newer term starts at %d, inside the older term's block [%d, %d)", c, a, a+minBlock)
	}
	if c > a+minBlock {
		t.Errorf("the newer term starts at %d, leaving a gap after the older term's block end %d", c, a+minBlock)
	}

	// A reservation of the newer term whose reply was lost (written here
	// behind its back) is recognised as its own, not as another term's.
	newer.mu.Lock()
	lostEnd, rev := newer.end+1000, newer.rev
	newer.mu.Unlock()
	if _, err := n.e.seqs.Update(t.Context(), kvKey(testKey), encodeSeq(lostEnd, newer.tag), rev); err != nil {
		t.Fatal(err)
	}
	d, err := newer.Reserve(2 * maxBlock)
	if err != nil {
		t.Fatalf("Reserve after a lost reply = %v", err)
	}
	if d != c+5 {
		t.Errorf("Reserve after a lost reply = %d, want %d (no gap)", d, c+5)
	}
}

// TestRenewal: a renewal finding its own name at a revision it did not
// see (its reply lost) keeps the term; finding another name ends it.
func TestRenewal(t *testing.T) {
	s := natstest.Start(t)
	n := newNode(t, s, "a", testLease, testHeartbeat)
	p := &probe{}
	n.run(t, testKey, p.work("a", nil))
	first, i := p.await(t, 0, 10*time.Second, "the term", startOf("a"))

	// overwrite writes the lease behind the owner's back, retrying when a
	// renewal moved the revision between the read and the write.
	overwrite := func(value string) {
		t.Helper()
		eventually(t, 10*time.Second, "overwriting the lease", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			e, err := n.e.leases.Get(ctx, kvKey(testKey))
			if err != nil {
				t.Fatal(err)
			}
			_, err = n.e.leases.Update(ctx, kvKey(testKey), []byte(value), e.Revision())
			if err != nil && !isConflict(err) {
				t.Fatal(err)
			}
			return err == nil
		})
	}

	overwrite("a")
	// Wait for the renewals to carry on past the overwritten revision.
	var rev uint64
	eventually(t, 10*time.Second, "renewals after the lost reply", func() bool {
		e, err := n.e.leases.Get(t.Context(), kvKey(testKey))
		if err != nil {
			return false
		}
		if rev == 0 {
			rev = e.Revision()
		}
		return e.Revision() > rev+1
	})
	if _, _, ok := p.find(i+1, endOf("a")); ok || first.term.Context().Err() != nil {
		t.Fatal("the term ended after a renewal whose reply was lost")
	}

	overwrite("b")
	p.await(t, i+1, 10*time.Second, "the term to end", endOf("a"))
	if err := context.Cause(first.term.Context()); !errors.Is(err, errRefused) {
		t.Errorf("cause = %v, want %v", err, errRefused)
	}
	eventually(t, 5*time.Second, "the loss to be counted and the new owner shown", func() bool {
		st := n.e.Status(testKey)
		return n.lost(reasonRefused) == 1 && st.Owner == "b" && !st.Mine
	})
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // every problem reported
	}{
		{"missing instance", Config{Lease: time.Second, Heartbeat: 100 * time.Millisecond}, []string{"instance: missing"}},
		{"lease below three heartbeats", Config{Instance: "a", Lease: time.Second, Heartbeat: 400 * time.Millisecond}, []string{"lease: 1s is shorter than three heartbeats"}},
		{"no durations", Config{Instance: "a"}, []string{"heartbeat: 0s", "lease: 0s"}},
		{"several", Config{Lease: 10 * time.Millisecond, Heartbeat: time.Second, Bucket: "a.b", Replicas: 7},
			[]string{"instance: missing", "lease: 10ms", `bucket: "a.b"`, "replicas: 7"}},
		{"one bucket for both", Config{Instance: "a", Lease: time.Second, Heartbeat: 100 * time.Millisecond, Bucket: "x", SeqBucket: "x"}, []string{"seq_bucket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), nil, tc.cfg, nil, nil)
			if !errors.Is(err, conf.ErrInvalidConfig) {
				t.Fatalf("New = %v, want an error wrapping conf.ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	_, err := New(t.Context(), nil, Config{Instance: "a", Lease: time.Second, Heartbeat: 100 * time.Millisecond}, nil, nil)
	if err == nil || errors.Is(err, conf.ErrInvalidConfig) {
		t.Errorf("New without JetStream = %v, want an error that is not a config problem", err)
	}
}

// TestMetricsRegistration: Electors on one registry share its series, and
// on different registries keep their own; neither panics.
func TestMetricsRegistration(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Instance: "a", Lease: time.Second, Heartbeat: 100 * time.Millisecond}
	shared, own := prometheus.NewRegistry(), prometheus.NewRegistry()
	var es []*Elector
	for _, reg := range []prometheus.Registerer{shared, shared, own, nil} {
		e, err := New(t.Context(), js, cfg, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if es[0].m.acquired != es[1].m.acquired {
		t.Error("two Electors on one registry do not share their series")
	}
	if es[0].m.acquired == es[2].m.acquired {
		t.Error("Electors on different registries share their series")
	}
	es[0].m.init(testKey)
	if n, err := testutil.GatherAndCount(shared, "ferry_lease_lost_total"); err != nil || n != len(reasons) {
		t.Errorf("lost series = %d, %v; want one per reason (%d)", n, err, len(reasons))
	}
}

func TestKVKey(t *testing.T) {
	for in, want := range map[string]string{
		"press1":       "press1",
		"line-2/plc_a": "line-2/plc_a",
		"press.1":      "press=2E1",
		"a b":          "a=20b",
		"x=y":          "x=3Dy",
		"":             "=",
		"é":            "=C3=A9",
	} {
		if got := kvKey(in); got != want {
			t.Errorf("kvKey(%q) = %q, want %q", in, got, want)
		}
	}
}
