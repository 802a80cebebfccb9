package spool

import (
	"os"
	"path/filepath"
	"slices"
	"sort"

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
// fields is guarded by store.mu.
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
	rd       segReader
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
		l.rd.release()
		l.cur, l.curOff, l.curCum = l.segs[i+1], fileHeaderLen, counts{}
		l.curSeq = max(l.curSeq, l.cur.base)
	}
}

func (l *lane) segIndex(s *segment) int {
	return slices.Index(l.segs, s)
}

// atCursor reads the next intact entry at the cursor and moves past it,
// counting damage on the way. body is nil when the lane has nothing left.
func (l *lane) atCursor() (e *entry, body []byte) {
	for {
		l.normalize()
		if l.cur == nil || l.curOff >= l.cur.size {
			if l.cur != nil && len(l.inflight) == 0 && len(l.redo) == 0 {
				l.rd.release()
			}
			return nil, nil
		}
		seg, off := l.cur, l.curOff
		h, b, ok, err := l.rd.readEntryAt(seg, off, seg.size)
		if err != nil {
			// An I/O error: leave the entry where it is and try later.
			l.st.ioError("read", seg.path, err)
			return nil, nil
		}
		if ok {
			e := &entry{lane: l, seg: seg, off: off, cum: l.curCum, h: h}
			l.curOff += h.size()
			l.curCum.add(&h)
			l.curSeq = h.seq + 1
			return e, b
		}
		// Damage found while reading (it was not there on open, or the
		// segment was trusted on its seal).
		if h.kind == kindMessage && off+h.size() <= seg.size {
			// Intact header, bad body: skip exactly this entry.
			seg.done.add(&h)
			l.st.liveBytes -= h.size()
			l.st.drop(reasonCorrupt, int64(h.records), seg.path)
			l.curOff += h.size()
			l.curCum.add(&h)
			l.curSeq = h.seq + 1
			continue
		}
		next, nh, err := l.rd.resync(seg, off, seg.size, l.curSeq-1)
		if err != nil {
			l.st.ioError("read", seg.path, err)
			return nil, nil
		}
		if next < 0 {
			next = seg.size
		} else if !seg.sealed {
			// The active segment has no seal to settle the count with.
			lost := int64(nh.seq - l.curSeq)
			l.st.drop(reasonCorrupt, lost, seg.path)
			seg.done.entries += lost
			seg.done.records += lost
		}
		l.curCum.bytes += next - off
		seg.done.bytes += next - off
		l.st.liveBytes -= next - off
		l.curOff = next
		if next < seg.size {
			l.curSeq = nh.seq
		}
	}
}

// take hands out the next deliverable entry of the lane, or nil: nacked
// entries first, then the cursor. Expired entries are counted and skipped.
func (l *lane) take(now int64) *entry {
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
	for {
		e, body := l.atCursor()
		if e == nil {
			l.advance()
			return nil
		}
		if l.st.expired(&e.h, now) {
			l.finish(e, reasonTTL)
			continue
		}
		if err := l.st.decode(e, body); err != nil {
			l.finish(e, reasonCorrupt)
			continue
		}
		l.inflight = append(l.inflight, e)
		return e
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
	e, _ := l.atCursor()
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
// first entry that has not. It reads at most budget entries.
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
		e, _ := l.atCursor()
		if e == nil {
			return
		}
		l.finish(e, reasonTTL)
	}
}

// peek reads the header of the entry at the cursor.
func (l *lane) peek() (header, bool) {
	l.normalize()
	if l.cur == nil || l.curOff+headerLen > l.cur.size {
		return header{}, false
	}
	s := l.cur
	if l.rd.seg == s && l.curOff >= l.rd.off && l.curOff+headerLen <= l.rd.off+int64(l.rd.n) {
		i := l.curOff - l.rd.off
		return parseHeader(l.rd.buf[i : i+headerLen])
	}
	// A lane nobody reads keeps no read buffer: one small pread.
	f, err := s.file()
	if err != nil {
		return header{}, false
	}
	var hb [headerLen]byte
	if _, err := f.ReadAt(hb[:], l.curOff); err != nil {
		return header{}, false
	}
	return parseHeader(hb[:])
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
		}
		l.st.liveBytes -= max(0, s.sum.bytes-s.done.bytes)
		if l.rd.seg == s {
			l.rd.release()
		}
		s.close()
		if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
			l.st.ioError("release", s.path, err)
		}
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

// oldest returns the append time of the first entry not yet done, or 0.
func (l *lane) oldest() int64 {
	f := l.frontier()
	var t int64
	for _, e := range [][]*entry{l.inflight, l.redo} {
		if len(e) > 0 && e[0].h.seq == f.seq {
			t = e[0].h.time
		}
	}
	if t != 0 {
		return t
	}
	if h, ok := l.peek(); ok {
		return h.time
	}
	return 0
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
// already acknowledged.
func loadLane(st *store, t *topic, prio int, dir string, repair bool) ([]Recovery, error) {
	l := &lane{st: st, topic: t, prio: prio, dir: dir}
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
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	var recs []Recovery
	for i, b := range bases {
		seg, r, err := loadSegment(filepath.Join(dir, segName(b)), b, i == len(bases)-1, repair)
		if err != nil {
			for _, s := range l.segs {
				s.close()
			}
			return nil, err
		}
		recs = append(recs, r...)
		l.segs = append(l.segs, seg)
	}
	ck, ckOK := readCheckpoint(filepath.Join(dir, ckptName))
	if ckOK {
		// Segments wholly before the head were released but not yet
		// deleted when the process stopped.
		for len(l.segs) > 1 && l.segs[0].base < ck.base {
			s := l.segs[0]
			l.segs = l.segs[1:]
			if repair {
				_ = os.Remove(s.path)
			}
		}
	}
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
	if l.w != nil {
		l.committed.wsize, l.committed.wsum = l.w.wsize, l.w.wsum
	}
	l.committed.nextSeq = l.nextSeq
	l.ckpt = l.frontier()
	for _, s := range l.segs {
		st.liveBytes += max(0, s.sum.bytes-s.done.bytes)
	}
	t.addLane(l)
	return recs, nil
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

func readCheckpoint(path string) (checkpoint, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, false
	}
	return decodeCheckpoint(b)
}

func writeCheckpoint(dir string, c checkpoint) error {
	tmp := filepath.Join(dir, ckptName+".tmp")
	if err := os.WriteFile(tmp, c.encode(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ckptName))
}
