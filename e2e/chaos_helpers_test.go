package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
)

// The chaos suite's own connectors. A module names its control with key:
// the supervisor builds a fresh connector from the section on every try,
// so what a test switches on and off, and what the sink saw, lives in the
// control, not in the connector.
func init() {
	connectors.Register(connectors.Info{Name: "chaossink", Roles: connectors.RoleSink,
		New: func() connectors.Connector { return &chaosSink{} }})
	connectors.Register(connectors.Info{Name: "chaossource", Roles: connectors.RoleSource,
		New: func() connectors.Connector { return &chaosSource{} }})
}

// control is the switchboard of one chaos module, shared by every
// connector built from its section.
type control struct {
	refuse    atomic.Bool // Write fails
	failStart atomic.Bool // Start fails
	panicking atomic.Bool // the source's loop panics
	starts    atomic.Int32

	mu      sync.Mutex
	hang    bool          // Write blocks, ignoring its context
	release chan struct{} // closed to let hung writes return
	hung    chan struct{} // closed when a Write has begun to hang

	rec recorder
}

var (
	controlsMu sync.Mutex
	controls   = map[string]*control{}
)

// newControl makes the control a test's modules name with key.
func newControl(t *testing.T, key string) *control {
	t.Helper()
	c := &control{release: make(chan struct{}), hung: make(chan struct{})}
	c.rec.sources = map[string]*seqSet{}
	controlsMu.Lock()
	defer controlsMu.Unlock()
	if controls[key] != nil {
		t.Fatalf("control %q exists", key)
	}
	controls[key] = c
	t.Cleanup(func() {
		c.setHang(false)
		controlsMu.Lock()
		delete(controls, key)
		controlsMu.Unlock()
	})
	return c
}

func lookup(key string) (*control, error) {
	controlsMu.Lock()
	defer controlsMu.Unlock()
	c := controls[key]
	if c == nil {
		return nil, fmt.Errorf("chaos: no control %q", key)
	}
	return c, nil
}

// setHang makes writes hang (a far side that took the connection and
// never answers) or lets every hung write return.
func (c *control) setHang(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on == c.hang {
		return
	}
	c.hang = on
	if on {
		c.release = make(chan struct{})
		c.hung = make(chan struct{})
	} else {
		close(c.release)
	}
}

// abort makes the writes hanging now return with an error, as closing
// their connection would; later writes hang again while the fault lasts.
func (c *control) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hang {
		close(c.release)
		c.release = make(chan struct{})
	}
}

// hangs returns, when writes hang, the channel that releases them and
// the one to close when one begins to.
func (c *control) hangs() (release, hung chan struct{}, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.release, c.hung, c.hang
}

// whenHung is closed once a write hangs (after setHang(true)).
func (c *control) whenHung() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hung
}

var (
	// errRefused is what a refusing chaos sink answers.
	errRefused = errors.New("chaos: far side refuses the batch")
	// errAborted ends a hung write that Stop aborted.
	errAborted = errors.New("chaos: connection closed with the write in flight")
)

// chaosSink takes batches and records their (source, seq), or refuses
// them, or never returns from Write, or fails to start, as its control
// says.
type chaosSink struct {
	Key string `yaml:"key"`
	ctl *control
}

func (s *chaosSink) Validate() error {
	if s.Key == "" {
		return errors.New("key: required")
	}
	return nil
}

func (s *chaosSink) Start(_ context.Context, _ *connectors.Env) error {
	c, err := lookup(s.Key)
	if err != nil {
		return err
	}
	c.starts.Add(1)
	if c.failStart.Load() {
		return errors.New("chaos: listen 127.0.0.1:1883: bind: address already in use")
	}
	s.ctl = c
	return nil
}

// Stop lets a hung write go, as closing its connection would.
func (s *chaosSink) Stop(context.Context) error {
	if s.ctl != nil {
		s.ctl.abort()
	}
	return nil
}

func (s *chaosSink) Write(_ context.Context, b *bus.Batch) error {
	if release, hung, on := s.ctl.hangs(); on {
		select {
		case <-hung:
		default:
			close(hung)
		}
		<-release // deliberately deaf to the context: the fault under test
		if _, _, still := s.ctl.hangs(); still {
			return errAborted
		}
	}
	if s.ctl.refuse.Load() {
		return errRefused
	}
	s.ctl.rec.add(b)
	return nil
}

// chaosSource emits one batch of tags counter records every interval, and
// panics in its loop (on entry and on every tick) while its control says
// so.
type chaosSource struct {
	Key      string        `yaml:"key"`
	Interval conf.Duration `yaml:"interval"`
	Tags     int           `yaml:"tags"`
	ctl      *control
	n        int64
}

func (s *chaosSource) Validate() error {
	if s.Key == "" || s.Interval <= 0 || s.Tags <= 0 {
		return errors.New("key, interval and tags: required")
	}
	return nil
}

func (s *chaosSource) Outputs() []string { return []string{connectors.DefaultOutput} }

func (s *chaosSource) Start(_ context.Context, env *connectors.Env) error {
	c, err := lookup(s.Key)
	if err != nil {
		return err
	}
	s.ctl = c
	c.starts.Add(1)
	env.Go("loop", func(ctx context.Context) error {
		if c.panicking.Load() {
			panic("chaos: device driver bug")
		}
		env.Up()
		tick := time.NewTicker(s.Interval.D())
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			if c.panicking.Load() {
				panic("chaos: device driver bug")
			}
			var b bus.Batch
			for i := range s.Tags {
				s.n++
				b.Records = append(b.Records, bus.Record{Device: "d", Tag: fmt.Sprintf("t%d", i), Value: bus.Long(s.n), Quality: bus.Good})
			}
			if err := env.Emit(ctx, &b); err != nil {
				return err
			}
		}
	})
	return nil
}

func (s *chaosSource) Stop(context.Context) error { return nil }

var (
	_ connectors.Sink   = (*chaosSink)(nil)
	_ connectors.Source = (*chaosSource)(nil)
)

// recorder keeps the (source, seq) a sink took.
type recorder struct {
	mu      sync.Mutex
	sources map[string]*seqSet
}

// seqSet is what arrived from one source.
type seqSet struct {
	seen       map[uint64]struct{}
	min, max   uint64
	dups       int
	outOfOrder int // below the highest seen before it
}

func (r *recorder) add(b *bus.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range b.Records {
		s := r.sources[rec.Source]
		if s == nil {
			s = &seqSet{seen: map[uint64]struct{}{}, min: rec.Seq, max: rec.Seq}
			r.sources[rec.Source] = s
		} else if rec.Seq < s.max {
			s.outOfOrder++
		}
		if _, ok := s.seen[rec.Seq]; ok {
			s.dups++
			continue
		}
		s.seen[rec.Seq] = struct{}{}
		s.min, s.max = min(s.min, rec.Seq), max(s.max, rec.Seq)
	}
}

// seqReport is a copy of what arrived from a source.
type seqReport struct {
	Unique           int
	Min, Max         uint64
	Missing          int // holes between Min and Max
	FirstMissing     uint64
	Dups, OutOfOrder int
}

func (r *recorder) report(source string) seqReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sources[source]
	if s == nil {
		return seqReport{}
	}
	rep := seqReport{Unique: len(s.seen), Min: s.min, Max: s.max, Dups: s.dups, OutOfOrder: s.outOfOrder}
	rep.Missing = int(s.max-s.min+1) - len(s.seen)
	if rep.Missing > 0 {
		for q := s.min; q <= s.max; q++ {
			if _, ok := s.seen[q]; !ok {
				rep.FirstMissing = q
				break
			}
		}
	}
	return rep
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sources {
		n += len(s.seen)
	}
	return n
}

// metric sums the samples of the named family whose labels include want.
func metric(p *router.Pipeline, name string, want map[string]string) float64 {
	mfs, err := p.Registry().Gather()
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func byModule(m string) map[string]string { return map[string]string{"module": m} }
func bySink(s string) map[string]string   { return map[string]string{"sink": s} }

// waitEvent waits for an event after id that match accepts, and returns
// it. It wakes on every new event; the deadline only bounds a failure.
func waitEvent(t testing.TB, p *router.Pipeline, after uint64, within time.Duration, what string, match func(connectors.Event) bool) connectors.Event {
	t.Helper()
	notify, stop := p.EventLog().Notify()
	defer stop()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		for _, ev := range p.Events(after) {
			if match(ev) {
				return ev
			}
			after = ev.ID
		}
		select {
		case <-notify:
		case <-deadline.C:
			t.Fatalf("after %v no event %s; events of the run:\n%s", within, what, eventList(p))
		}
	}
}

// lastEventID is where the events after now begin.
func lastEventID(p *router.Pipeline) uint64 {
	evs := p.Events(0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].ID
}

func eventList(p *router.Pipeline) string {
	var b strings.Builder
	for _, ev := range p.Events(0) {
		fmt.Fprintf(&b, "  #%d %s %s %s %s->%s %q count=%d\n", ev.ID, ev.Time.Format("15:04:05.000"), ev.Module, ev.Kind, ev.From, ev.To, ev.Error, ev.Count)
	}
	return b.String()
}

// stateEvent matches module's transition to phase, with a cause when
// cause is set (its text must contain it).
func stateEvent(module string, to connectors.Phase, cause string) func(connectors.Event) bool {
	return func(ev connectors.Event) bool {
		return ev.Kind == connectors.EventState && ev.Module == module && ev.To == to &&
			(cause == "" || strings.Contains(ev.Error, cause))
	}
}

func hasEvent(p *router.Pipeline, after uint64, match func(connectors.Event) bool) bool {
	return slices.ContainsFunc(p.Events(after), match)
}

// logBuffer keeps a pipeline's log for the report of a failed case.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger(t *testing.T) *slog.Logger {
	t.Helper()
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			s := lb.String()
			if len(s) > 20000 {
				s = "…" + s[len(s)-20000:]
			}
			t.Logf("pipeline log:\n%s", s)
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
