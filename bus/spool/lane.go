package spool

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// topic is a set of lanes, one per priority, highest first.
type topic struct {
	name  string
	lanes []*lane
	wake  chan struct{} // closed and replaced when something may be deliverable
}

func (t *topic) signal() {
	close(t.wake)
	t.wake = make(chan struct{})
}

// lane is the queue of one (topic, priority). Everything but the writer's
// fields and rd is guarded by store.mu.
//
// Reading at the cursor takes rmu and then store.mu, and lets go of
// store.mu for the disk read and the decryption (see readNext): a slow
// disk then holds up only other readers of the same lane, never Publish,
// the writer's commit or acknowledgements. rmu owns rd. Lock order: rmu
// before store.mu; code holding store.mu may only TryLock rmu, or let go
// of store.mu first.
type lane struct {
	st    *store
	topic *topic
	prio  int
	dir   string
	segs  []*segment // oldest first; the last one takes appends unless sealed

	// Read side.
	cur      *segment // segment of the next entry not yet handed out
	curOff   int64
	curCum   counts // entries of cur before curOff
	curSeq   uint64 // seq expected at curOff
	inflight []*entry
	redo     []*entry // nacked, delivered again before the cursor moves on
	rmu      sync.Mutex
	rd       segReader // under rmu
	ckpt     checkpoint
	dirty    bool // ckpt is stale

	// Writer goroutine only.
	w       *segment // active segment; nil until the first append or after a seal
	nextSeq uint64
	wbuf    []byte
	staged  []*pendingItem
	// committed is the writer state readers have seen, restored when a
	// write fails.
	committed struct {
		wsize   int64
		wsum    summary
		nextSeq uint64
	}
}

// entry is a message handed out and not yet done with.
type entry struct {
	lane *lane
	seg  *segment
	off  int64
	cum  counts
	h    header

	uuid    string
	md      message.Metadata
	payload []byte
	decoded bool  // the message above was filled (not done for an expired entry)
	decErr  error // the body did not decrypt or parse
	done    bool
}

func bySeq(a, b *entry) int {
	switch {
	case a.h.seq < b.h.seq:
		return -1
	case a.h.seq > b.h.seq:
		return 1
	}
	return 0
}

func insertSorted(l []*entry, e *entry) []*entry {
	i, _ := slices.BinarySearchFunc(l, e, bySeq)
	return slices.Insert(l, i, e)
}

func remove(l []*entry, e *entry) []*entry {
	if i := slices.Index(l, e); i >= 0 {
		return slices.Delete(l, i, i+1)
	}
	return l
}

// normalize moves the cursor past the end of sealed segments and over
// damage found on open.
func (l *lane) normalize() {
	if l.cur == nil {
		if len(l.segs) == 0 {
			return
		}
		l.cur, l.curOff, l.curCum = l.segs[0], fileHeaderLen, counts{}
		l.curSeq = l.cur.base
	}
	for {
		if b, ok := l.cur.badAt(l.curOff); ok {
			l.curOff = b.end
			continue
		}
		if l.curOff < l.cur.size || !l.cur.sealed {
			return
		}
		i := l.segIndex(l.cur)
		if i < 0 || i+1 >= len(l.segs) {
			return
		}
		l.cur, l.curOff, l.curCum = l.segs[i+1], fileHeaderLen, counts{}
		l.curSeq = max(l.curSeq, l.cur.base)
	}
}

func (l *lane) segIndex(s *segment) int {
	return slices.Index(l.segs, s)
}

// unread reports whether the cursor has an entry (or damage) to read.
// Under store.mu.
func (l *lane) unread() bool {
	l.normalize()
	return l.cur != nil && l.curOff < l.cur.size
}

// readNext reads the entry at the cursor and, if want (nil: any) accepts
// its header, moves the cursor past it and returns it; nil when the lane
// has nothing to read or want said no. Damage on the way is skipped and
// counted. decode asks for the message of an entry not expired at now.
//
// The caller holds rmu and store.mu. store.mu is let go while the entry is
// read and decrypted, so that appends, commits and acknowledgements go on
// meanwhile; then the cursor is checked again. Only a holder of rmu reads
// at the cursor, but a drop or an expiry by summary (under store.mu alone)
// may have moved it: the read is then done again where it is now. The
// cursor only moves forward, so an unchanged (segment, offset) means
// nothing moved it.
func (l *lane) readNext(now int64, decode bool, want func(*header) bool) *entry {
	st := l.st
	for {
		if !l.unread() {
			return nil
		}
		seg, off, limit, seq := l.cur, l.curOff, l.cur.size, l.curSeq
		var e *entry
		var r readResult
		if l.rd.holds(seg, off, limit) && (!decode || st.sealer == nil) {
			// Already in the read buffer and nothing to decrypt: a copy,
			// cheaper than letting go of the lock and taking it again.
			e, r = st.readAt(l, seg, off, limit, seq-1, now, decode)
		} else {
			st.mu.Unlock()
			e, r = st.readAt(l, seg, off, limit, seq-1, now, decode)
			st.mu.Lock()
			if l.cur != seg || l.curOff != off {
				continue
			}
		}
		if r.err != nil {
			// An I/O error: leave the entry where it is and try later.
			st.ioError("read", seg.path, r.err)
			return nil
		}
		if e != nil {
			if want != nil && !want(&e.h) {
				return nil
			}
			e.cum = l.curCum
			l.curOff += e.h.size()
			l.curCum.add(&e.h)
			l.curSeq = e.h.seq + 1
			return e
		}
		l.skipDamage(seg, off, limit, r)
	}
}

// skipDamage moves the cursor over damage found while reading at off (it
// was not there on open, or the segment was trusted on its seal), counting
// it and noting the seqs lost. Under store.mu.
func (l *lane) skipDamage(seg *segment, off, limit int64, r readResult) {
	st := l.st
	h := r.h
	if h.kind == kindMessage && off+h.size() <= limit {
		// Intact header, bad body: skip exactly this entry.
		seg.done.add(&h)
		st.liveBytes -= h.size()
		st.drop(reasonCorrupt, int64(h.records), seg.path)
		st.noteDamage(Recovery{Kind: DamageEntries, Segment: seg.path, Offset: off, Bytes: h.size(),
			Entries: 1, FirstSeq: h.seq, LastSeq: h.seq, Records: int64(h.records), RecordsExact: true})
		l.curOff += h.size()
		l.curCum.add(&h)
		l.curSeq = h.seq + 1
		return
	}
	next, nh := r.next, r.nh
	rec := Recovery{Kind: DamageEntries, Segment: seg.path, Offset: off, FirstSeq: l.curSeq}
	switch {
	case next >= 0:
		rec.Entries, rec.LastSeq = int64(nh.seq-l.curSeq), nh.seq-1
		if !seg.sealed {
			// The active segment has no seal to settle the count with:
			// one record per entry.
			st.drop(reasonCorrupt, rec.Entries, seg.path)
			seg.done.entries += rec.Entries
			seg.done.records += rec.Entries
		}
	case seg.sealed && seg.sum.entries > 0 && seg.sum.lastSeq >= l.curSeq:
		// Nothing intact up to the seal: the rest of the segment.
		rec.Entries, rec.LastSeq = int64(seg.sum.lastSeq-l.curSeq+1), seg.sum.lastSeq
	}
	if next < 0 {
		next = limit
	}
	// In a sealed segment the seal settles the records when the segment
	// is released (advance); here they are a lower bound.
	rec.Bytes, rec.Records = next-off, rec.Entries
	st.noteDamage(rec)
	l.curCum.bytes += next - off
	seg.done.bytes += next - off
	st.liveBytes -= next - off
	l.curOff = next
	if next < limit {
		l.curSeq = nh.seq
	}
}

// readResult is what a read at the cursor found, without store.mu.
type readResult struct {
	h    header // as far as it could be read
	next int64  // after damage: offset of the next intact entry, or -1
	nh   header // its header
	err  error  // an I/O error
}

// readAt reads the entry at off of seg, or after damage there the next
// intact one, and decodes (decrypts) it if asked and not expired at now.
// It runs without store.mu and with l.rmu: it touches only l.rd, the
// segment's file and immutable store fields.
func (st *store) readAt(l *lane, seg *segment, off, limit int64, after uint64, now int64, decode bool) (*entry, readResult) {
	if h := st.cfg.hooks; h != nil && h.read != nil && !l.rd.holds(seg, off, limit) {
		h.read(seg.path, off)
	}
	var r readResult
	h, body, ok, err := l.rd.readEntryAt(seg, off, limit)
	r.h, r.err = h, err
	if err != nil {
		return nil, r
	}
	if ok {
		e := &entry{lane: l, seg: seg, off: off, h: h}
		if decode && !st.expired(&h, now) {
			e.decErr = st.decode(e, body)
			e.decoded = true
		}
		return e, r
	}
	if h.kind == kindMessage && off+h.size() <= limit {
		return nil, r
	}
	r.next, r.nh, r.err = l.rd.resync(seg, off, limit, after)
	return nil, r
}

// takeRedo hands out the first nacked entry not expired. Under store.mu.
func (l *lane) takeRedo(now int64) *entry {
	for len(l.redo) > 0 {
		e := l.redo[0]
		l.redo = l.redo[1:]
		if l.st.expired(&e.h, now) {
			l.finish(e, reasonTTL)
			continue
		}
		l.inflight = insertSorted(l.inflight, e)
		return e
	}
	return nil
}

// take hands out the next deliverable entry of the lane, or nil: nacked
// entries first, then the cursor. Expired entries are counted and skipped.
// Under rmu and store.mu (let go while reading).
func (l *lane) take(now int64) *entry {
	// A nack that comes in while the cursor's entry is being read goes
	// first: the read is left for later.
	noRedo := func(*header) bool { return len(l.redo) == 0 }
	for {
		if e := l.takeRedo(now); e != nil {
			return e
		}
		e := l.readNext(now, true, noRedo)
		if e == nil {
			if len(l.redo) > 0 {
				continue
			}
			if len(l.inflight) == 0 && !l.unread() {
				l.rd.release() // a quiet lane keeps no read buffer
			}
			l.advance()
			return nil
		}
		if l.st.expired(&e.h, now) {
			l.finish(e, reasonTTL)
			continue
		}
		if !e.decoded || e.decErr != nil {
			l.finish(e, reasonCorrupt)
			continue
		}
		l.inflight = append(l.inflight, e)
		return e
	}
}

// lockRead takes rmu while the caller holds store.mu, letting go of
// store.mu if a reader has rmu.
func (l *lane) lockRead() {
	if !l.rmu.TryLock() {
		l.st.mu.Unlock()
		l.rmu.Lock()
		l.st.mu.Lock()
	}
}

// skipOldest drops the oldest entry that is not in flight, for the quota,
// or the whole segment at the cursor if all of it must go to free need
// bytes. It reports whether it dropped anything.
func (l *lane) skipOldest(need int64) bool {
	if len(l.redo) > 0 {
		e := l.redo[0]
		l.redo = l.redo[1:]
		l.finish(e, reasonQuota)
		return true
	}
	l.normalize()
	if s := l.cur; s != nil && s.sum.bytes-s.done.bytes <= need && l.dropWholeSegment(reasonQuota) {
		return true
	}
	if !l.unread() {
		return false
	}
	l.lockRead()
	defer l.rmu.Unlock()
	e := l.readNext(l.st.now().UnixNano(), false, nil)
	if e == nil {
		return false
	}
	l.finish(e, reasonQuota)
	return true
}

// dropWholeSegment drops the sealed segment the cursor is at the start of,
// using its summary instead of reading it.
func (l *lane) dropWholeSegment(reason string) bool {
	s := l.cur
	if s == nil || !s.sealed || l.curOff != fileHeaderLen || len(s.bad) > 0 || l.segIndex(s) == len(l.segs)-1 {
		return false
	}
	left := counts{s.sum.entries - s.done.entries, s.sum.records - s.done.records, s.sum.bytes - s.done.bytes}
	s.done = counts{s.sum.entries, s.sum.records, s.sum.bytes}
	l.st.liveBytes -= left.bytes
	l.st.drop(reason, left.records, s.path)
	l.curOff = s.size
	l.curCum = s.done
	l.curSeq = s.sum.lastSeq + 1
	l.normalize()
	l.advance()
	return true
}

// expireHead drops expired entries at the head of the lane, whole segments
// by their summary where every entry in them has expired, and stops at the
// first entry that has not. It reads at most budget entries. Under rmu and
// store.mu (let go while reading).
func (l *lane) expireHead(now int64, budget int) {
	for len(l.redo) > 0 && l.st.expired(&l.redo[0].h, now) {
		e := l.redo[0]
		l.redo = l.redo[1:]
		l.finish(e, reasonTTL)
	}
	if len(l.redo) > 0 {
		return
	}
	for range budget {
		l.normalize()
		if s := l.cur; s != nil && s.sealed && l.curOff == fileHeaderLen {
			if by := s.sum.allExpireBy(l.st.maxAge); by != 0 && by < now && l.dropWholeSegment(reasonTTL) {
				continue
			}
		}
		h, ok := l.peek()
		if !ok || !l.st.expired(&h, now) {
			return
		}
		e := l.readNext(now, false, func(h *header) bool { return l.st.expired(h, now) })
		if e == nil {
			return
		}
		l.finish(e, reasonTTL)
	}
}

// peek reads the header of the entry at the cursor, from the read buffer
// or with one small pread (a lane nobody reads keeps no read buffer).
// Under rmu and store.mu, let go for the read.
func (l *lane) peek() (header, bool) {
	for {
		l.normalize()
		if l.cur == nil || l.curOff+headerLen > l.cur.size {
			return header{}, false
		}
		seg, off := l.cur, l.curOff
		l.st.mu.Unlock()
		h, ok := l.rd.peek(seg, off)
		l.st.mu.Lock()
		if l.cur == seg && l.curOff == off {
			return h, ok
		}
	}
}

// finish marks an entry done: acknowledged (reason "") or dropped.
func (l *lane) finish(e *entry, reason string) {
	if e.done {
		return
	}
	e.done = true
	e.seg.done.add(&e.h)
	l.st.liveBytes -= e.h.size()
	if reason != "" {
		l.st.drop(reason, int64(e.h.records), e.seg.path)
	}
	l.st.spaceFreed()
	l.advance()
}

func (l *lane) ack(e *entry) {
	if e.done || !slices.Contains(l.inflight, e) {
		return
	}
	l.inflight = remove(l.inflight, e)
	l.finish(e, "")
}

func (l *lane) nack(e *entry) {
	if e.done || !slices.Contains(l.inflight, e) {
		return
	}
	l.inflight = remove(l.inflight, e)
	l.redo = insertSorted(l.redo, e)
	l.topic.signal()
}

// frontier is the first entry not yet done: the lowest in flight or nacked,
// else the cursor.
func (l *lane) frontier() checkpoint {
	var first *entry
	if len(l.inflight) > 0 {
		first = l.inflight[0]
	}
	if len(l.redo) > 0 && (first == nil || l.redo[0].h.seq < first.h.seq) {
		first = l.redo[0]
	}
	if first != nil {
		return checkpoint{seq: first.h.seq, base: first.seg.base, off: first.off, before: first.cum}
	}
	if l.cur == nil {
		return checkpoint{}
	}
	return checkpoint{seq: l.curSeq, base: l.cur.base, off: l.curOff, before: l.curCum}
}

// advance releases the segments wholly before the frontier and marks the
// checkpoint stale.
func (l *lane) advance() {
	l.normalize()
	f := l.frontier()
	if f != l.ckpt {
		l.dirty = true
	}
	for len(l.segs) > 1 && l.segs[0].base < f.base && l.segs[0].sealed {
		s := l.segs[0]
		l.segs = l.segs[1:]
		// What the summary holds beyond what was counted done was lost to
		// damage that could not be measured when it was skipped.
		if left := s.sum.records - s.done.records; left > 0 {
			l.st.drop(reasonCorrupt, left, s.path)
			l.st.logger.Warn("spool: records lost to damage in a segment, counted from its seal",
				"segment", s.path, "records", left, "entries", s.sum.entries-s.done.entries)
		}
		l.st.liveBytes -= max(0, s.sum.bytes-s.done.bytes)
		l.st.discard(s)
	}
}

// live returns the entries not yet done.
func (l *lane) live() counts {
	var c counts
	for _, s := range l.segs {
		c.entries += max(0, s.sum.entries-s.done.entries)
		c.records += max(0, s.sum.records-s.done.records)
		c.bytes += max(0, s.sum.bytes-s.done.bytes)
	}
	return c
}

// oldest returns the append time of the first entry not yet done, or 0,
// without reading: if that entry is only on disk, it returns the segment
// and offset to read its header from (see store.stats). Under store.mu.
func (l *lane) oldest() (t int64, seg *segment, off int64) {
	f := l.frontier()
	for _, e := range [][]*entry{l.inflight, l.redo} {
		if len(e) > 0 && e[0].h.seq == f.seq {
			t = e[0].h.time
		}
	}
	if t != 0 {
		return t, nil, 0
	}
	l.normalize()
	if l.cur == nil || l.curOff+headerLen > l.cur.size {
		return 0, nil, 0
	}
	if l.curOff == fileHeaderLen && l.cur.sum.entries > 0 && l.cur.sum.firstSeq == l.curSeq {
		return l.cur.sum.firstTime, nil, 0
	}
	return 0, l.cur, l.curOff
}

// diskBytes returns the size of the lane's files.
func (l *lane) diskBytes() int64 {
	var n int64
	for _, s := range l.segs {
		n += s.size
		if s.sealed {
			n += sealLen
		}
	}
	return n
}

// loadLane opens a lane directory: its segments (scanning only the last)
// and its head file, which places the cursor without reading what was
// already acknowledged. Segments that do not meet (one's last seq + 1 is
// not the next one's base) lost what lay between; checkLane counts it.
func loadLane(st *store, t *topic, prio int, dir string, repair bool) ([]Recovery, error) {
	l := &lane{st: st, topic: t, prio: prio, dir: dir}
	bases, err := segBases(dir)
	if err != nil {
		return nil, err
	}
	var recs []Recovery      // not tied to a kept segment
	var segRecs [][]Recovery // per segment of l.segs
	var minNext uint64 = 1   // the lane's next seq is at least this
	for i, b := range bases {
		seg, r, err := loadSegment(filepath.Join(dir, segName(b)), b, i == len(bases)-1, repair, st.cfg.hooks)
		if err != nil {
			for _, s := range l.segs {
				s.close()
			}
			return nil, err
		}
		if seg == nil {
			// An empty last segment, removed: its base is still taken.
			minNext = b
			recs = append(recs, r...)
			continue
		}
		l.segs = append(l.segs, seg)
		segRecs = append(segRecs, r)
	}
	ckPath := filepath.Join(dir, ckptName)
	var ck checkpoint
	ckOK, headDamaged := false, false
	if b, err := os.ReadFile(ckPath); err == nil {
		if ck, ckOK = decodeCheckpoint(b); !ckOK {
			// Unreadable: the cursor starts at the first segment, and what
			// was acknowledged in it comes again. Nothing is lost.
			headDamaged = true
			recs = append(recs, Recovery{Kind: DamageHead, Segment: ckPath, Bytes: int64(len(b))})
		}
	}
	if ckOK {
		// Segments wholly before the head were released but not yet
		// deleted when the process stopped; damage in them lost nothing.
		for len(l.segs) > 1 && l.segs[0].base < ck.base {
			s := l.segs[0]
			l.segs, segRecs = l.segs[1:], segRecs[1:]
			if repair {
				_ = os.Remove(s.path)
			}
		}
	}
	recs = append(checkLane(dir, l.segs, segRecs), recs...)
	if len(l.segs) > 0 {
		first := l.segs[0]
		l.cur, l.curOff, l.curSeq = first, fileHeaderLen, first.base
		if ckOK && ck.base == first.base && ck.off >= fileHeaderLen && ck.off <= first.size {
			l.curOff, l.curSeq, l.curCum = ck.off, ck.seq, ck.before
			first.done = ck.before
		}
		last := l.segs[len(l.segs)-1]
		if last.sealed {
			l.nextSeq = max(last.base, last.sum.lastSeq+1)
		} else {
			l.w = last
			l.nextSeq = last.base
			if last.sum.entries > 0 {
				l.nextSeq = last.sum.lastSeq + 1
			}
		}
	} else {
		l.nextSeq = 1
		if ckOK {
			l.nextSeq = ck.seq
		}
	}
	l.nextSeq = max(l.nextSeq, minNext)
	if l.w != nil {
		l.committed.wsize, l.committed.wsum = l.w.wsize, l.w.wsum
	}
	l.committed.nextSeq = l.nextSeq
	l.ckpt = l.frontier()
	l.dirty = headDamaged // written again on the housekeeper's next tick
	for _, s := range l.segs {
		st.liveBytes += max(0, s.sum.bytes-s.done.bytes)
	}
	t.addLane(l)
	return recs, nil
}

// segBases lists a lane directory's segments by base, ascending.
func segBases(dir string) ([]uint64, error) {
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, n := range names {
		if b, ok := parseSegName(n.Name()); ok {
			bases = append(bases, b)
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// checkLane settles what the damage in a lane's segments cost, from the
// neighbours' bounds: the entries between one segment's last intact entry
// and the next segment's base are lost. A segment whose end was unreadable
// (a torn tail or the whole of it) lost exactly those, whatever its scan
// could tell; a segment that was whole means the files between were
// deleted; an unreadable end with nothing missing after it was only the
// seal. It returns the segments' damage, settled, and the missing files.
// The last segment has no neighbour after it: its torn tail counts one
// entry at least.
func checkLane(dir string, segs []*segment, segRecs [][]Recovery) []Recovery {
	var out []Recovery
	for i, a := range segs {
		recs := segRecs[i]
		if i+1 == len(segs) {
			out = append(out, recs...)
			break
		}
		b := segs[i+1]
		end := a.base - 1 // the last seq a holds
		if a.sum.entries > 0 {
			end = max(end, a.sum.lastSeq)
		}
		var tail *Recovery
		for j := range recs {
			if k := recs[j].Kind; k == DamageTornTail || k == DamageSegment {
				tail = &recs[j]
			}
		}
		switch {
		case b.base <= end+1 && tail != nil:
			*tail = Recovery{Kind: DamageSummary, Segment: tail.Segment, Offset: tail.Offset, Bytes: tail.Bytes}
		case b.base <= end+1:
		case tail != nil:
			n := int64(b.base - end - 1)
			exact := n == 1 && tail.Entries == 1 && tail.RecordsExact
			tail.Kind = DamageEntries
			if a.sum.entries == 0 {
				tail.Kind = DamageSegment
			}
			tail.Entries, tail.FirstSeq, tail.LastSeq, tail.Truncated = n, end+1, b.base-1, false
			if !exact {
				tail.Records, tail.RecordsExact = n, false
			}
		default:
			n := int64(b.base - end - 1)
			recs = append(recs, Recovery{Kind: DamageMissingSegment, Segment: filepath.Join(dir, segName(end+1)),
				Entries: n, FirstSeq: end + 1, LastSeq: b.base - 1, Records: n})
		}
		out = append(out, recs...)
	}
	return out
}

func (t *topic) addLane(l *lane) {
	i := sort.Search(len(t.lanes), func(i int) bool { return t.lanes[i].prio < l.prio })
	t.lanes = slices.Insert(t.lanes, i, l)
}

func (t *topic) lane(prio int) *lane {
	for _, l := range t.lanes {
		if l.prio == prio {
			return l
		}
	}
	return nil
}

func writeCheckpoint(dir string, c checkpoint) error {
	tmp := filepath.Join(dir, ckptName+".tmp")
	if err := os.WriteFile(tmp, c.encode(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ckptName))
}
