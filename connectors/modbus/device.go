package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// device polls one device. Its fields are owned by the poll goroutine of
// its link, except poked.
type device struct {
	m     *Modbus
	spec  *deviceSpec
	set   *settings
	link  *link
	met   *deviceMetrics
	diag  *diag
	tags  []tagState // parallel to spec.tags
	byTag map[string]int

	groups  []pollGroup // by poll interval, shortest first
	learned *learnedDevice
	relearn bool // learned changed this cycle: replan and persist

	batch   bus.Batch
	backoff connectors.Backoff
	due     time.Time   // next poll
	poked   atomic.Bool // poll as soon as possible (after a write)
	// free holds a token while batch may be filled, on links with several
	// devices, whose batches are emitted by the link's emitter while the
	// next device is read; nil on a link of one device, which emits itself.
	free    chan struct{}
	failing bool
	upOnce  bool
}

// tagState is what report-by-exception compares against.
type tagState struct {
	last   bus.Value
	status uint32
	q      bus.Quality
	have   bool
	sent   int64 // source time it was last emitted
	str    string
}

func newDevice(m *Modbus, spec *deviceSpec, l *link, learned *learnedDevice, met *deviceMetrics) *device {
	d := &device{
		m: m, spec: spec, set: &spec.set, link: l, met: met,
		tags:    make([]tagState, len(spec.tags)),
		byTag:   make(map[string]int, len(spec.tags)),
		learned: learned,
		diag:    &diag{},
	}
	if d.learned == nil {
		d.learned = &learnedDevice{}
	}
	d.backoff = connectors.Backoff{Min: spec.set.poll, Max: max(spec.set.maxBackoff, spec.set.poll)}
	for i, t := range spec.tags {
		d.byTag[t.name] = i
	}
	d.replan()
	d.batch.Records = make([]bus.Record, 0, len(spec.tags))
	return d
}

// replan (re)computes the poll groups' read plans, keeping when each
// group is due, and publishes what was learned to diagnostics and
// metrics.
func (d *device) replan() {
	old := d.groups
	d.groups = d.spec.groups(d.learned)
	for i := range d.groups {
		if i < len(old) { // the same intervals, in the same order
			d.groups[i].due, d.groups[i].polled = old[i].due, old[i].polled
		}
	}
	l := d.learned.describe()
	d.diag.learned.Store(&l)
	gs := make([]PollGroupDiagnostics, len(d.groups))
	for i, g := range d.groups {
		gs[i] = PollGroupDiagnostics{Interval: g.interval.String(), Tags: g.tags, Requests: len(g.plan)}
	}
	d.diag.groups.Store(&gs)
	d.met.setLearned(d.learned)
}

// schedule sets when the device polls next: one poll interval after the
// cycle that just ran was due (at once if that is past); after a cycle
// in which the device did not answer, a back-off with jitter instead, from
// the poll interval up to max_backoff.
func (d *device) schedule(ok bool, start time.Time) {
	now := time.Now()
	var backoff time.Duration
	if !ok {
		backoff = d.backoff.Next()
	} else {
		d.backoff.Reset()
	}
	d.due = time.Time{}
	for i := range d.groups {
		g := &d.groups[i]
		if g.polled {
			g.polled = false
			if !ok {
				g.due = now.Add(backoff)
			} else {
				// Keep to the grid of the schedule, so that the late
				// wake-ups of a timer do not add up; after a poll out of
				// turn, or one too late to catch up, start a new grid.
				base := g.due
				if base.IsZero() || start.Before(base) || start.Sub(base) >= g.interval {
					base = start
				}
				g.due = base.Add(g.interval)
				if g.due.Before(now) {
					g.due = now
				}
			}
		}
		if d.due.IsZero() || g.due.Before(d.due) {
			d.due = g.due
		}
	}
}

// requestPoll makes the device poll as soon as its link is free.
func (d *device) requestPoll() {
	d.poked.Store(true)
	select {
	case d.link.wake <- struct{}{}:
	default:
	}
}

// cycle reads the plans of the device's poll groups that are due (all of
// them when poked) and emits one batch. It reports whether the device
// answered.
func (d *device) cycle(ctx context.Context, start time.Time, poked bool) bool {
	if d.free != nil {
		select { // the previous batch must be out before it is reused
		case <-d.free:
		case <-ctx.Done():
			return true
		}
		defer func() {
			if p := recover(); p != nil {
				select { // the supervisor restarts the loop: let it cycle
				case d.free <- struct{}{}:
				default:
				}
				panic(p)
			}
		}()
	}
	d.batch.Reset()
	var failure error
	for gi := range d.groups {
		g := &d.groups[gi]
		if !poked && start.Before(g.due) {
			continue
		}
		g.polled = true
		if failure != nil {
			d.failRest(g.plan, 0, failure)
			continue
		}
		failure = d.readPlan(ctx, g.plan)
		if ctx.Err() != nil {
			return true
		}
	}
	if d.relearn {
		d.relearn = false
		d.replan()
		if err := d.m.learned.put(d.spec, d.learned); err != nil {
			d.m.env.Error(err)
		}
		d.met.learned.Inc()
		n := 0
		for _, g := range d.groups {
			n += len(g.plan)
		}
		d.m.env.Logger.Info("learned device limits; read plan updated",
			slog.String("device", d.spec.name), slog.Int("requests", n),
			slog.Any("learned", d.learned.describe()))
	}
	if d.set.closeAfterPoll {
		d.link.hangUp(ctx)
	}
	// State first: whoever sees the batch sees the state it reports.
	if failure != nil {
		d.m.deviceDown(d, failure)
	} else {
		d.m.deviceUp(d)
	}
	d.met.cycle.Set(time.Since(start).Seconds())
	switch {
	case d.free == nil:
		if len(d.batch.Records) > 0 {
			_ = d.m.env.Emit(ctx, &d.batch) // Emit counts and logs its own failures
		}
	case len(d.batch.Records) == 0:
		d.free <- struct{}{}
	default:
		select {
		case d.link.emitq <- d:
		case <-ctx.Done():
		}
	}
	return failure == nil
}

// readPlan reads one poll group's plan; it returns the failure of the
// link (no answer, no connection) that ended it early, after marking the
// tags not read BAD.
func (d *device) readPlan(ctx context.Context, plan []request) error {
	for ri := 0; ri < len(plan); ri++ {
		r := &plan[ri]
		data, err := d.read(ctx, r.area, r.start, r.count)
		now := time.Now().UnixNano()
		if err == nil {
			d.decode(r, r.tags, data, now)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		var ee *ExceptionError
		if errors.As(err, &ee) {
			if addressException(ee) && spans(d.spec.tags, r.tags) > 1 {
				if err := d.probe(ctx, r.area, r.tags); err != nil {
					d.failRest(plan, ri, err)
					return err
				}
				continue
			}
			d.exception(r.area, int(r.start), r.count, r.tags, ee, now)
			continue
		}
		failure := d.wrap("read", r.area, int(r.start), r.count, err)
		d.failRest(plan, ri, failure)
		return failure
	}
	return nil
}

func (d *device) failRest(plan []request, from int, err error) {
	now := time.Now().UnixNano()
	for ; from < len(plan); from++ {
		d.bad(plan[from].tags, statusOf(err), err, now)
	}
}

// read reads with the device's unit and timeout, sending a request that
// got no valid answer again, on a fresh connection, up to retries times.
func (d *device) read(ctx context.Context, area Area, start uint16, count int) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		d.met.requests.Inc()
		t0 := time.Now()
		data, err := d.link.read(ctx, d.spec.unit, d.set.timeout, d.set.pauseBetween, area, start, count)
		d.observe(time.Since(t0), err)
		if err == nil {
			return data, nil
		}
		var ee *ExceptionError
		if errors.As(err, &ee) {
			d.met.exception(ee.Code)
			return nil, err
		}
		d.met.failure(statusOf(err))
		if attempt >= d.set.retries || ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return nil, err
		}
	}
}

// observe counts one exchange in diagnostics and metrics.
func (d *device) observe(took time.Duration, err error) {
	if d.diag.observe(took, err) {
		d.met.responses.Inc()
		d.met.latency.Observe(took.Seconds())
	}
}

func (d *device) wrap(op string, area Area, start, count int, err error) error {
	return &RequestError{Device: d.spec.name, Op: op, Area: area, Start: start, Count: count, Err: err}
}

// decode turns one response into records for tags idx.
func (d *device) decode(r *request, idx []int, data []byte, now int64) {
	for _, i := range idx {
		t := &d.spec.tags[i]
		off := int(t.addr - r.start)
		var v bus.Value
		if r.area.Bits() {
			v = bus.Bool(data[off>>3]>>(off&7)&1 != 0)
		} else {
			var ok bool
			if v, ok = d.value(t, &d.tags[i], data[2*off:2*(off+t.size)]); !ok {
				d.add(i, bus.Null(), bus.Bad, StatusBadValue, map[string]string{"error": badValue(t, data[2*off:2*(off+t.size)])}, now)
				continue
			}
		}
		d.add(i, v, bus.Good, 0, nil, now)
	}
}

// value decodes one tag from its registers (wire bytes); ok is false when
// they hold no value of the tag's type (a BCD nibble above 9).
func (d *device) value(t *tagSpec, st *tagState, b []byte) (v bus.Value, ok bool) {
	switch t.typ {
	case TBit:
		return bus.Bool(t.order.Uint(b, 1)>>t.bit&1 != 0), true
	case TString:
		st.str = decodeString(b, t.strLen, t.order, t.byteEach, st.str)
		return bus.String(st.str), true
	}
	raw := t.order.Uint(b, t.size)
	var i int64
	var f float64
	isInt := true
	switch t.typ {
	case TInt16:
		i = int64(int16(raw))
	case TInt32:
		i = int64(int32(raw))
	case TUint16, TUint32, TInt64:
		i = int64(raw)
	case TUint64:
		if raw > math.MaxInt64 {
			f, isInt = float64(raw), false
		} else {
			i = int64(raw)
		}
	case TFloat32:
		f, isInt = float64(math.Float32frombits(uint32(raw))), false
	case TFloat64:
		f, isInt = math.Float64frombits(raw), false
	case TFloat16:
		f, isInt = float16(uint16(raw)), false
	case TBCD16, TBCD32:
		if i, ok = fromBCD(raw, 4*t.size); !ok {
			return bus.Value{}, false
		}
	}
	if t.scaled {
		if isInt {
			f = float64(i)
		}
		return bus.Double(f*t.scale + t.offset), true
	}
	if isInt {
		return bus.Long(i), true
	}
	return bus.Double(f), true
}

// badValue says why a tag's registers hold no value of its type.
func badValue(t *tagSpec, b []byte) string {
	return fmt.Sprintf("%s: registers 0x%X are not %s (a nibble above 9)", t.name, b, t.typ)
}

// add appends a record for tag i unless report-by-exception holds it back:
// same value, quality and status as last sent, and the heartbeat not due.
func (d *device) add(i int, v bus.Value, q bus.Quality, status uint32, attrs map[string]string, now int64) {
	st := &d.tags[i]
	if d.set.rbe && st.have && st.q == q && st.status == status && st.last.Equal(v) &&
		(d.set.heartbeat <= 0 || now-st.sent < int64(d.set.heartbeat)) {
		return
	}
	st.last, st.q, st.status, st.have, st.sent = v, q, status, true, now
	t := &d.spec.tags[i]
	d.batch.Records = append(d.batch.Records, bus.Record{
		Device: d.spec.name, Tag: t.name, Value: v, Quality: q, Status: status,
		SourceTime: now, Unit: t.unit, Attrs: attrs,
	})
}

// bad appends BAD records for tags idx, with the reason in attrs["error"].
func (d *device) bad(idx []int, status uint32, reason error, now int64) {
	attrs := map[string]string{"error": reason.Error()}
	for _, i := range idx {
		d.add(i, bus.Null(), bus.Bad, status, attrs, now)
	}
}

func (d *device) exception(area Area, start, count int, idx []int, ee *ExceptionError, now int64) {
	err := d.wrap("read", area, start, count, ee)
	d.bad(idx, uint32(ee.Code), err, now)
	d.m.env.Error(err)
}

func addressException(ee *ExceptionError) bool { return ee.Code == 2 || ee.Code == 3 }

// spans counts the distinct register ranges among tags idx (sorted by
// address): tags on exactly the same registers count once.
func spans(tags []tagSpec, idx []int) int {
	n := 0
	for k, i := range idx {
		if k == 0 || tags[i].addr != tags[idx[k-1]].addr || tags[i].size != tags[idx[k-1]].size {
			n++
		}
	}
	return n
}

// probe is called when a read of several tags got an illegal-address (or
// illegal-value) exception. It reads the tags in halves, recursively, so
// every tag the device serves gets its value in this cycle, and learns why
// the read failed:
//
//   - a tag the device rejects on its own: its range is avoided (read alone,
//     BAD with the exception code every cycle);
//   - two halves that read fine apart, with unused registers between them
//     that the device rejects: that gap is avoided;
//   - two halves that read fine apart with a readable gap, while the whole
//     read still fails when tried again: the device has a length limit,
//     learned as the longer half.
//
// Only a failure of the link itself (no answer) is returned.
func (d *device) probe(ctx context.Context, area Area, idx []int) error {
	tags := d.spec.tags
	// Split at the tag boundary nearest the middle that separates ranges.
	cut := -1
	for k := 1; k < len(idx); k++ {
		if tags[idx[k]].addr == tags[idx[k-1]].addr && tags[idx[k]].size == tags[idx[k-1]].size {
			continue
		}
		end := 0
		for _, i := range idx[:k] {
			end = max(end, tags[i].end())
		}
		if int(tags[idx[k]].addr) < end {
			continue // overlaps what is left of it
		}
		if cut < 0 || abs(k-len(idx)/2) < abs(cut-len(idx)/2) {
			cut = k
		}
	}
	start, end := bounds(tags, idx)
	if cut < 0 {
		// One range the device rejects on its own.
		data, err := d.read(ctx, area, uint16(start), end-start)
		now := time.Now().UnixNano()
		var ee *ExceptionError
		switch {
		case err == nil:
			d.decode(&request{area: area, start: uint16(start)}, idx, data, now)
		case errors.As(err, &ee):
			if addressException(ee) && d.learned.areaFor(area).addAvoid(rng{start, end - 1}) {
				d.relearn = true
			}
			d.exception(area, start, end-start, idx, ee, now)
		default:
			return d.wrap("read", area, start, end-start, err)
		}
		return nil
	}
	left, right := idx[:cut], idx[cut:]
	okL, err := d.probeHalf(ctx, area, left)
	if err != nil {
		return err
	}
	okR, err := d.probeHalf(ctx, area, right)
	if err != nil {
		return err
	}
	if !okL || !okR {
		return nil // what failed was found further down
	}
	ls, le := bounds(tags, left)
	rs, re := bounds(tags, right)
	if rs > le {
		_, err := d.read(ctx, area, uint16(le), rs-le)
		var ee *ExceptionError
		if errors.As(err, &ee) && addressException(ee) {
			if d.learned.areaFor(area).addAvoid(rng{le, rs - 1}) {
				d.relearn = true
			}
			return nil
		}
		if err != nil && ee == nil {
			return d.wrap("read", area, le, rs-le, err)
		}
	}
	// The gap reads; try the whole range again before blaming its length,
	// so a passing fault does not cut every later read short.
	_, err = d.read(ctx, area, uint16(start), end-start)
	var ee *ExceptionError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && addressException(ee):
		// Every address in the range reads, in parts: the length is what
		// the device rejects. Find the longest read it serves, between
		// the longer half (served) and the whole (refused twice).
		lo, hi := max(le-ls, re-rs), end-start
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			_, err := d.read(ctx, area, uint16(start), mid)
			ee = nil
			switch {
			case err == nil:
				lo = mid
				continue
			case errors.As(err, &ee) && addressException(ee):
				hi = mid
				continue
			case ee == nil:
				return d.wrap("read", area, start, mid, err)
			}
			break // another refusal: keep what is known
		}
		la := d.learned.areaFor(area)
		if la.MaxCount == 0 || lo < la.MaxCount {
			la.MaxCount = lo
			d.relearn = true
		}
		return nil
	case ee != nil:
		return nil
	}
	return d.wrap("read", area, start, end-start, err)
}

// probeHalf reads tags idx as one request; on an address exception it
// probes further. It reports whether the one read succeeded.
func (d *device) probeHalf(ctx context.Context, area Area, idx []int) (bool, error) {
	start, end := bounds(d.spec.tags, idx)
	data, err := d.read(ctx, area, uint16(start), end-start)
	now := time.Now().UnixNano()
	if err == nil {
		d.decode(&request{area: area, start: uint16(start)}, idx, data, now)
		return true, nil
	}
	var ee *ExceptionError
	if !errors.As(err, &ee) {
		return false, d.wrap("read", area, start, end-start, err)
	}
	if addressException(ee) && spans(d.spec.tags, idx) > 1 {
		return false, d.probe(ctx, area, idx)
	}
	// One range the device rejects on its own (or a refusal of another
	// kind, which is reported and not learned).
	if addressException(ee) && d.learned.areaFor(area).addAvoid(rng{start, end - 1}) {
		d.relearn = true
	}
	d.exception(area, start, end-start, idx, ee, now)
	return false, nil
}

func bounds(tags []tagSpec, idx []int) (start, end int) {
	start = math.MaxInt
	for _, i := range idx {
		start = min(start, int(tags[i].addr))
		end = max(end, tags[i].end())
	}
	return start, end
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
