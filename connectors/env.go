package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/burstlog"
)

// Env is what a running connector gets from ferry: its name and logger, the
// bus to emit on, its state and counters, and supervised goroutines.
type Env struct {
	Name string // instance name from the config
	Type string
	Site string
	// Instance names this ferry among those sharing a NATS bus; empty on
	// the in-process bus. Client ids that must be unique per box use it.
	Instance string
	Logger   *slog.Logger
	Metrics  *Metrics // for connector-specific series, register on Metrics.Reg with Collector

	dataDir string
	pub     message.Publisher
	lend    bool // pub is the in-process bus: batches cross it by reference
	source  string
	seq     SeqSource
	fenced  bool // seq errors mean this instance may not emit (lease lost)
	// seqBlocked: the last reservation failed and the source is blocked.
	seqBlocked atomic.Bool
	state      *State
	in, out    prometheus.Counter
	errs       prometheus.Counter
	sent       prometheus.Counter
	retries    prometheus.Counter
	topics     map[string]string
	limit      burstlog.Limiter // errors, per cause
	dropMu     sync.Mutex
	dropped    map[string]int // records dropped since the last line, by reason
	events     *Events
	retry      Backoff // template for Go's restarts
	write      func(ctx context.Context, device, tag string, v bus.Value) error
	// wake is closed and replaced each time the connector comes up, so a
	// sink's retry sleeping on a down link wakes the moment it is back.
	wakeMu sync.Mutex
	wake   chan struct{}

	life   sync.Mutex // guards ctx and cancel, which Renew replaces
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// EnvConfig is what the runtime (or a test) supplies to build an Env.
type EnvConfig struct {
	Name, Type, Site string
	Instance         string // see Env.Instance
	// Source is the source name stamped on records; default Name. A
	// source that runs on every instance of a shared bus numbers its
	// records on its own, so each instance stamps a name of its own.
	Source    string
	DataDir   string // ferry's data dir; the connector's own is DataDir/<name>
	Logger    *slog.Logger
	Publisher message.Publisher // where Emit publishes; nil for a sink-only connector
	Metrics   *Metrics
	Outputs   []string
	// Sink: the module is a sink, with ferry_sink_sent_total and
	// ferry_sink_retries_total, and ferry_link_up when its type crosses a
	// link (Info.CrossesLink).
	Sink bool
	// WriteTag, when set, delivers write-back commands to the connector
	// that owns the tag (the pipeline supplies it).
	WriteTag func(ctx context.Context, device, tag string, v bus.Value) error
	// Seq, when set, numbers the records instead of the sequence store in
	// the data dir: an active/standby source takes its numbers from the
	// lease it holds, and a refusal there means it must not emit at all.
	Seq SeqSource
	// Events, when set, receives the module's state changes and errors
	// (rate-limited as the log is).
	Events *Events
	// Retry is the back-off of a goroutine started with Go that failed;
	// default RestartBackoff.
	Retry Backoff
}

// RestartBackoff is how long a failed module or goroutine waits before it
// is tried again: about 1 s, doubling to 1 min, with jitter.
var RestartBackoff = Backoff{Min: time.Second, Max: time.Minute}

// SeqSource hands out sequence numbers: the first of n consecutive ones.
type SeqSource interface {
	Reserve(n int) (uint64, error)
}

// NewEnv builds an Env. It opens the sequence store, which is the only
// thing here that can fail.
func NewEnv(c EnvConfig) (*Env, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	e := &Env{
		Name: c.Name, Type: c.Type, Site: c.Site, Instance: c.Instance, Metrics: c.Metrics,
		Logger:  c.Logger.With("module", c.Name, "connector", c.Type),
		dataDir: c.DataDir,
		pub:     c.Publisher,
		lend:    bus.InProcess(c.Publisher),
		source:  c.Source,
		in:      c.Metrics.RecordsIn.WithLabelValues(c.Name),
		out:     c.Metrics.RecordsOut.WithLabelValues(c.Name),
		errs:    c.Metrics.Errors.WithLabelValues(c.Name),
		topics:  map[string]string{},
		write:   c.WriteTag,
		events:  c.Events,
		retry:   c.Retry,
		wake:    make(chan struct{}),
	}
	if e.retry.Min <= 0 {
		e.retry = RestartBackoff
	}
	up := c.Metrics.Up.WithLabelValues(c.Name)
	// Each series only where it means something: sink counters for sinks,
	// the link gauge for sinks that cross a link (not a file, not the
	// embedded broker). A type the registry does not know is taken to.
	var link prometheus.Gauge
	if c.Sink {
		e.sent = c.Metrics.SinkSent.WithLabelValues(c.Name)
		e.retries = c.Metrics.SinkRetries.WithLabelValues(c.Name)
		if info, ok := Lookup(c.Type); !ok || info.CrossesLink() {
			link = c.Metrics.LinkUp.WithLabelValues(c.Name)
		}
	}
	e.state = newState(func(p Phase) {
		v := 0.0
		if p == PhaseUp {
			v = 1
		}
		up.Set(v)
		if link != nil {
			link.Set(v)
		}
	})
	outs := c.Outputs
	if len(outs) == 0 {
		outs = []string{DefaultOutput}
	}
	for _, o := range outs {
		e.topics[o] = Topic(c.Name, o)
	}
	if e.source == "" {
		e.source = c.Name
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if c.Seq != nil {
		e.seq, e.fenced = c.Seq, true
	} else if c.Publisher != nil {
		// Never a reason not to build the Env: a store that cannot be
		// written makes emission wait (ErrSeqNotDurable), and a damaged one
		// is rebuilt and reported (SeqOpened).
		e.seq, _ = OpenSequencer(c.DataDir, c.Name, e.Logger)
	}
	return e, nil
}

// Topic is the bus topic of a module's output.
func Topic(module, output string) string { return module + "/" + output }

// State returns the connector's live state.
func (e *Env) State() *State { return e.state }

// Context is cancelled when the connector is stopped.
func (e *Env) Context() context.Context {
	e.life.Lock()
	defer e.life.Unlock()
	return e.ctx
}

// DataDir returns the connector's own directory under the data dir, creating
// it. Certificates, offsets and learned limits go there.
func (e *Env) DataDir() (string, error) {
	if e.dataDir == "" {
		return "", fmt.Errorf("%s: no data_dir configured", e.Name)
	}
	d := filepath.Join(e.dataDir, e.Name)
	if err := os.MkdirAll(d, 0o750); err != nil {
		return "", fmt.Errorf("%s: data dir: %w", e.Name, err)
	}
	return d, nil
}

// Path resolves a path from the connector's config: relative paths are
// taken relative to ferry's data dir, so one --data-dir moves everything.
func (e *Env) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || e.dataDir == "" {
		return p
	}
	return filepath.Join(e.dataDir, p)
}

// Up marks the connector up (device connected, link established). Coming
// back logs once, with how long it was away and how many errors were kept
// quiet meanwhile, and wakes anything waiting for the link (Woken).
func (e *Env) Up() {
	prev, since, changed := e.state.set(PhaseUp)
	if !changed {
		return
	}
	suppressed := e.limit.Take()
	attrs := []slog.Attr{slog.String("from", string(prev))}
	msg := "up"
	switch prev {
	case PhaseDown, PhaseRetrying, PhaseFailed:
		msg = "up again"
		attrs = append(attrs, slog.Duration("down_for", time.Since(since).Round(time.Millisecond)))
		if suppressed > 0 {
			attrs = append(attrs, slog.Int("errors_suppressed", suppressed))
		}
	}
	e.Logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	e.events.Add(Event{Module: e.Name, Kind: EventState, From: prev, To: PhaseUp, Message: msg, Count: int64(suppressed)})
	e.wakeMu.Lock()
	close(e.wake)
	e.wake = make(chan struct{})
	e.wakeMu.Unlock()
}

// Woken returns a channel closed the next time the connector comes up: a
// sink's retry waits on it as well as on its back-off, so draining starts
// the moment the link is back.
func (e *Env) Woken() <-chan struct{} {
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	return e.wake
}

// Connecting marks a connector that has started but whose first connection
// is still being made. Connectors that manage a link call it from Start, so
// the runtime does not mark them up before the link is.
func (e *Env) Connecting() { e.transition(PhaseConnecting, nil) }

// Down marks the connector down with the reason and counts it. Going down
// is logged once, with the cause; while it stays down, its errors are
// logged as Error logs them.
func (e *Env) Down(err error) {
	if !e.transition(PhaseDown, err) {
		e.note(err)
	}
}

// Retrying marks a module that failed (Start, or a goroutine) and will be
// tried again at next: the attempt count and the time are on the status
// page, the cause stays in last_error.
func (e *Env) Retrying(err error, attempt int, next time.Time) {
	changed := e.transition(PhaseRetrying, err)
	e.state.setRetry(attempt, next)
	if !changed {
		e.note(err)
	}
}

// SetPhase moves to p, logging and recording the change once (the runtime
// uses it for stopped, standby and starting).
func (e *Env) SetPhase(p Phase) { e.transition(p, nil) }

// Block marks a source that may not emit for now, with why; Unblock ends
// it (back to up, unless the phase moved on meanwhile).
func (e *Env) Block(err error) {
	if !e.transition(PhaseBlocked, err) {
		e.note(err)
	}
}

// Unblock ends a Block.
func (e *Env) Unblock() {
	if e.state.Phase() == PhaseBlocked {
		e.Up()
	}
}

// transition moves to p; a change is one log line and one event, with
// cause. It reports whether the phase changed. A cause is counted as an
// error either way.
func (e *Env) transition(p Phase, cause error) bool {
	if cause != nil {
		e.errs.Inc()
		e.state.Errors.Add(1)
		e.state.setErr(cause)
	}
	prev, _, changed := e.state.set(p)
	if !changed {
		return false
	}
	ev := Event{Module: e.Name, Kind: EventState, From: prev, To: p, Message: string(p)}
	attrs := []slog.Attr{slog.String("from", string(prev))}
	level := slog.LevelInfo
	if cause != nil {
		ev.Error = cause.Error()
		attrs = append(attrs, slog.String("error", ev.Error))
		level = slog.LevelWarn
		// The line just logged is this cause's for the window.
		e.limit.Allow(ev.Error)
	}
	e.Logger.LogAttrs(context.Background(), level, string(p), attrs...)
	e.events.Add(ev)
	return true
}

// Error counts an error and keeps it as the last error, without changing
// the phase: a malformed payload is an error, not an outage. It is logged
// (and recorded as an event) at once for a cause not seen in the current
// window, and once a window with a count for a cause that repeats.
func (e *Env) Error(err error) {
	if err == nil {
		return
	}
	e.errs.Inc()
	e.state.Errors.Add(1)
	e.state.setErr(err)
	e.note(err)
}

// note logs an error already counted, rate-limited per cause, and records
// it as an event when it logs.
func (e *Env) note(err error) {
	text := err.Error()
	n, ok := e.limit.Allow(text)
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("error", text)}
	if n > 0 {
		attrs = append(attrs, slog.Int("repeats_suppressed", n))
	}
	e.Logger.LogAttrs(context.Background(), slog.LevelWarn, "error", attrs...)
	e.events.Add(Event{Module: e.Name, Kind: EventError, Message: "error", Error: text, Count: int64(n)})
}

// Dropped records that n records were dropped for reason (a full buffer,
// a shutdown): counted by the caller's metric, told here as an event and a
// log line once a window per reason.
func (e *Env) Dropped(n int, reason string, cause error) {
	text := reason
	if cause != nil {
		text = reason + ": " + cause.Error()
	}
	// The line and the event a window gets count every record dropped
	// since the last one, not just the drop that opened the window. The
	// tally is kept per cause as the limiter sees it (burstlog.Key), so
	// causes whose texts differ only in numbers share one entry, and an
	// entry is emptied whenever its cause logs, instead of piling up.
	what := "drop " + text
	key := burstlog.Key(what)
	e.dropMu.Lock()
	if e.dropped == nil {
		e.dropped = map[string]int{}
	}
	e.dropped[key] += n
	_, ok := e.limit.Allow(what)
	total := e.dropped[key]
	if ok {
		delete(e.dropped, key)
	}
	e.dropMu.Unlock()
	if !ok {
		return
	}
	e.Logger.LogAttrs(context.Background(), slog.LevelWarn, "records dropped", slog.Int("records", total), slog.String("reason", text))
	e.events.Add(Event{Module: e.Name, Kind: EventDrop, Message: "records dropped: " + reason, Error: text, Count: int64(total)})
}

// CountIn adds n to the records the connector received.
func (e *Env) CountIn(n int) {
	e.in.Add(float64(n))
	e.state.In.Add(uint64(n))
}

// CountOut adds n to the records the connector handed on.
func (e *Env) CountOut(n int) {
	e.out.Add(float64(n))
	e.state.Out.Add(uint64(n))
}

// WriteTag hands a write-back command to whichever connector owns the
// device's tag, and returns its answer: nil when the device took the value;
// ErrUnknownTag, ErrNotWritable or the device's own error otherwise.
func (e *Env) WriteTag(ctx context.Context, device, tag string, v bus.Value) error {
	if e.write == nil {
		return fmt.Errorf("%s/%s: %w (no writer in this pipeline)", device, tag, ErrUnknownTag)
	}
	return e.write(ctx, device, tag, v)
}

// Sent counts records a sink delivered (nothing for a module that is not
// a sink: it has no such series).
func (e *Env) Sent(n int) {
	if e.sent != nil {
		e.sent.Add(float64(n))
	}
}

// Retry counts a failed sink write that will be tried again.
func (e *Env) Retry() {
	if e.retries != nil {
		e.retries.Inc()
	}
}

// Emit publishes b on the default output. See EmitTo.
func (e *Env) Emit(ctx context.Context, b *bus.Batch) error {
	return e.EmitTo(ctx, DefaultOutput, b)
}

// EmitTo stamps every record (source module, ingest time when unset, source
// time when unset, sequence number) and publishes the batch. Once EmitTo
// returns the bus has taken (encoded, or on the in-process bus read) the
// batch, so the caller may reuse it.
func (e *Env) EmitTo(ctx context.Context, output string, b *bus.Batch) error {
	if b == nil || len(b.Records) == 0 {
		return nil
	}
	n := len(b.Records)
	if e.pub == nil {
		return fmt.Errorf("%s: emit on a connector with no publisher", e.Name)
	}
	topic, ok := e.topics[output]
	if !ok {
		return fmt.Errorf("%s: emit on undeclared output %q", e.Name, output)
	}
	var (
		first uint64
		gap   *SeqGap
		serr  error
	)
	if gs, ok := e.seq.(SeqGapSource); ok {
		first, gap, serr = gs.ReserveGap(n)
	} else {
		first, serr = e.seq.Reserve(n)
	}
	if serr != nil {
		// Nothing was handed out, so nothing is published: a number the
		// store does not cover could repeat after a restart. The caller
		// retries (a re-emit, or Go's restart).
		if !e.fenced && !errors.Is(serr, ErrSeqNotDurable) {
			serr = fmt.Errorf("%w: %w", ErrSeqNotDurable, serr)
		}
		serr = fmt.Errorf("%s: %w", e.Name, serr)
		if e.fenced {
			e.Error(serr)
		} else {
			// Until a reservation is durable the source waits, and says
			// so: blocked, with the cause (a full disk).
			e.seqBlocked.Store(true)
			e.Block(serr)
		}
		return serr
	}
	if e.seqBlocked.Swap(false) {
		e.Unblock()
	}
	now := time.Now().UnixNano()
	for i := range b.Records {
		r := &b.Records[i]
		r.Source = e.source
		if r.IngestTime == 0 {
			r.IngestTime = now
		}
		if r.SourceTime == 0 {
			r.SourceTime = r.IngestTime
		}
		r.Seq = first + uint64(i)
	}
	var callerAttrs map[string]string
	if gap != nil {
		callerAttrs = b.Records[0].Attrs
		gap.stamp(&b.Records[0])
	}
	e.CountIn(n)
	var msg *message.Message
	if e.lend {
		// Read by the router before Publish returns (the in-process bus
		// waits for its subscribers), so nothing is encoded.
		msg = bus.Lend(b)
		defer bus.Return(msg)
	} else {
		msg = bus.NewMessage(b)
	}
	if gap != nil {
		// After the publish (a loan is read until then), and so a reused
		// batch does not repeat the announcement.
		defer func() { b.Records[0].Attrs = callerAttrs }()
	}
	msg.SetContext(ctx)
	// A bus that can refuse (NATS away, its stream full) is waited for:
	// the source stalls, and what it has accepted is not thrown away.
	var bo Backoff
	for {
		err := e.pub.Publish(topic, msg)
		if err == nil {
			break
		}
		err = fmt.Errorf("%s: publish %s: %w", e.Name, topic, err)
		if errors.Is(err, bus.ErrStopping) {
			return err // not taken, and no use retrying: the source keeps it
		}
		e.Error(err)
		t := time.NewTimer(bo.Next())
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		case <-e.Context().Done():
		}
		t.Stop()
		return err
	}
	e.CountOut(n)
	return nil
}

// Go runs fn in a supervised goroutine until the connector stops. When fn
// returns an error or panics, the connector is marked retrying (with the
// attempt and the time of the next try) and fn is started again after a
// back-off (RestartBackoff, reset once a run lasted a minute); a panic is
// logged with its stack. fn returning nil, or the Env's context ending,
// ends the supervision.
//
// fn must survive being run again: it may be restarted any number of
// times, so it re-initialises what it uses on entry, never closes a
// channel or releases a resource that a later run needs, and keeps (or
// counts as lost) a batch it could not emit instead of dropping it
// silently.
func (e *Env) Go(name string, fn func(ctx context.Context) error) {
	ctx := e.Context()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		bo := e.retry
		for ctx.Err() == nil {
			start := time.Now()
			err := e.runGuarded(ctx, name, fn)
			if err == nil || ctx.Err() != nil {
				return
			}
			if time.Since(start) > time.Minute {
				bo.Reset()
			}
			wait := bo.Next()
			e.Retrying(fmt.Errorf("%s: %w", name, err), bo.Attempts(), time.Now().Add(wait))
			if Sleep(ctx, wait) != nil {
				return
			}
		}
	}()
}

// errPanic marks a recovered panic.
var errPanic = errors.New("panic")

func (e *Env) runGuarded(ctx context.Context, name string, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
			// A panic in a loop logs its stack once a window, not once a
			// restart.
			if _, ok := e.limit.Allow("panic " + name + fmt.Sprint(p)); ok {
				e.Logger.Error("recovered panic", "goroutine", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}
	}()
	return fn(ctx)
}

// Renew readies an Env that was shut down for another run of its module
// (the supervisor restarting it): a fresh context; counters, state and
// sequence numbers carry on.
func (e *Env) Renew() {
	e.life.Lock()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.life.Unlock()
}

// Shutdown cancels the Env's context and waits for its goroutines, up to
// ctx's deadline. The runtime calls it after the connector's Stop.
func (e *Env) Shutdown(ctx context.Context) error {
	defer e.closeSeq()
	e.life.Lock()
	e.cancel()
	e.life.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: goroutines still running after stop: %w", e.Name, ctx.Err())
	}
}
