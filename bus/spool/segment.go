package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// segment is one file of a lane. Fields other than the writer's are guarded
// by store.mu.
type segment struct {
	base uint64
	path string
	// f is the writer's file while active, opened for reading on demand.
	// fmu guards f (readers open it without store.mu); the writer uses f
	// directly, because an active segment's f is set and never closed.
	fmu  sync.Mutex
	f    *os.File
	gone bool // released: never opened again

	size   int64   // readable end: entries before it are written (fsynced under "always")
	sealed bool    // no more appends; a seal entry follows size on disk
	sum    summary // of the message entries before size
	done   counts  // entries acknowledged, dropped, expired or counted corrupt
	bad    []span  // damage found on open, skipped by readers without counting again

	// Writer goroutine only.
	wsize int64
	wsum  summary
	dirty atomic.Bool // written since the last fsync
}

type span struct{ off, end int64 }

// file returns the segment's file, opening it for reading if needed.
func (s *segment) file() (*os.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.gone {
		return nil, os.ErrClosed
	}
	if s.f == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, err
		}
		s.f = f
	}
	return s.f, nil
}

func (s *segment) close() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}

// retire closes the segment for good: a reader that still holds it (its
// cursor was moved past it while it read) gets os.ErrClosed.
func (s *segment) retire() {
	s.fmu.Lock()
	s.gone = true
	s.fmu.Unlock()
	s.close()
}

// badAt returns the damaged span starting at off, if any.
func (s *segment) badAt(off int64) (span, bool) {
	for _, b := range s.bad {
		if b.off == off {
			return b, true
		}
	}
	return span{}, false
}

// Recovery describes damage found in a spool: on open, while reading, or
// by Verify. A torn tail (Truncated) was cut off the file; damage inside a
// segment is skipped.
type Recovery struct {
	Kind    string // what was damaged: one of the Damage… constants
	Segment string // file path (spool.meta or a head file for those kinds)
	Offset  int64  // where the damage starts
	Bytes   int64  // bytes discarded
	// Entries is how many entries were lost, FirstSeq..LastSeq their seqs
	// in the lane (the spool's own entry sequence; 0..0 when not known).
	Entries           int64
	FirstSeq, LastSeq uint64
	// Records is the records the lost entries held: exact when
	// RecordsExact (their headers or the segment's seal could be read),
	// else a lower bound of one record per entry.
	Records      int64
	RecordsExact bool
	Truncated    bool // a torn tail, cut from the file (or a file removed)
}

// Kinds of damage.
const (
	DamageTornTail       = "torn-tail"       // the end of a lane's last segment
	DamageEntries        = "entries"         // entries inside a segment
	DamageSegment        = "segment"         // a whole segment unreadable (zeroed, cut short)
	DamageMissingSegment = "missing-segment" // a segment file gone from the middle of a lane
	DamageEmptySegment   = "empty-segment"   // a segment whose header was never written: nothing lost
	DamageSummary        = "summary"         // a segment's seal unreadable: rebuilt by a scan, nothing lost
	DamageFileHeader     = "file-header"     // a segment's file header: nothing lost
	DamageHead           = "head"            // a lane's head file: acknowledged entries come again
	DamageMeta           = "meta"            // spool.meta: rebuilt from the segments
)

// segReader reads entries through a buffer, so that draining a lane costs
// one pread per chunk rather than per entry.
type segReader struct {
	seg *segment
	buf []byte
	off int64 // file offset of buf[0]
	n   int
}

const readChunk = 256 << 10

// at returns n bytes at off of seg, not reading past limit. The slice is
// valid until the next call.
func (r *segReader) at(seg *segment, off int64, n int, limit int64) ([]byte, error) {
	if off+int64(n) > limit {
		return nil, io.ErrUnexpectedEOF
	}
	if r.seg == seg && off >= r.off && off+int64(n) <= r.off+int64(r.n) {
		i := int(off - r.off)
		return r.buf[i : i+n], nil
	}
	f, err := seg.file()
	if err != nil {
		return nil, err
	}
	want := int64(max(n, readChunk))
	want = min(want, limit-off)
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	m, err := f.ReadAt(r.buf, off)
	if m < n {
		r.seg = nil
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.seg, r.off, r.n = seg, off, m
	return r.buf[:n], nil
}

// holds reports whether the entry at off of seg is wholly in the buffer
// (so that reading it needs no I/O).
func (r *segReader) holds(seg *segment, off, limit int64) bool {
	end := r.off + int64(r.n)
	if r.seg != seg || off < r.off || off+headerLen > end {
		return false
	}
	h, ok := parseHeader(r.buf[off-r.off : off-r.off+headerLen])
	return ok && off+h.size() <= min(end, limit)
}

// peek returns the header at off of seg from the buffer, or reads just the
// header without filling the buffer.
func (r *segReader) peek(seg *segment, off int64) (header, bool) {
	if r.seg == seg && off >= r.off && off+headerLen <= r.off+int64(r.n) {
		i := off - r.off
		return parseHeader(r.buf[i : i+headerLen])
	}
	return readHeaderAt(seg, off)
}

// readHeaderAt reads the header at off of seg with one small pread.
func readHeaderAt(seg *segment, off int64) (header, bool) {
	f, err := seg.file()
	if err != nil {
		return header{}, false
	}
	var hb [headerLen]byte
	if _, err := f.ReadAt(hb[:], off); err != nil {
		return header{}, false
	}
	return parseHeader(hb[:])
}

// release drops the buffer when a reader is idle, so that a quiet lane does
// not keep 256KiB.
func (r *segReader) release() { *r = segReader{} }

// maxResync bounds how far a seq may jump over damage before a header found
// by resync is believed.
const maxResync = 1 << 24

// readEntryAt reads and checks the entry at off. ok is false for damage.
func (r *segReader) readEntryAt(seg *segment, off, limit int64) (h header, body []byte, ok bool, err error) {
	hb, err := r.at(seg, off, headerLen, limit)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return header{}, nil, false, nil
		}
		return header{}, nil, false, err
	}
	h, ok = parseHeader(hb)
	if !ok || h.kind != kindMessage || off+h.size() > limit {
		return h, nil, false, nil
	}
	b, err := r.at(seg, off, int(h.size()), limit)
	if err != nil {
		return h, nil, false, err
	}
	body = b[headerLen:]
	if crc(body) != h.bodyCRC {
		return h, nil, false, nil
	}
	return h, body, true, nil
}

// resync looks for the next intact entry after damage at off whose seq
// follows after (exclusive). It returns its offset, or -1.
func (r *segReader) resync(seg *segment, off, limit int64, after uint64) (int64, header, error) {
	for p := off + 1; p+headerLen <= limit; p++ {
		hb, err := r.at(seg, p, headerLen, limit)
		if err != nil {
			return -1, header{}, err
		}
		h, ok := parseHeader(hb)
		if !ok || h.kind != kindMessage || h.seq <= after || h.seq-after > maxResync || p+h.size() > limit {
			continue
		}
		if _, _, ok, err := r.readEntryAt(seg, p, limit); err != nil {
			return -1, header{}, err
		} else if ok {
			return p, h, nil
		}
	}
	return -1, header{}, nil
}

// scan walks a segment from its start, summing intact entries, noting
// damage inside it and finding where the intact data ends. A seal entry
// ends the walk.
type scanResult struct {
	sum     summary
	end     int64 // end of the last intact entry (or of the file header)
	sealed  bool
	seal    summary // the seal's, when sealed
	bad     []span
	damage  []Recovery // inside the segment
	tail    *Recovery  // a torn tail from end to the file's end
	fileLen int64
}

func scan(seg *segment, fileLen int64) (scanResult, error) {
	res := scanResult{end: fileHeaderLen, fileLen: fileLen}
	var r segReader
	off := int64(fileHeaderLen)
	last := seg.base - 1 // the seq before the first expected one
	for off < fileLen {
		h, _, ok, err := r.readEntryAt(seg, off, fileLen)
		if err != nil {
			return res, err
		}
		if ok && h.seq > last {
			res.sum.add(&h)
			last = h.seq
			off += h.size()
			res.end = off
			continue
		}
		if !ok && h.kind == kindSeal && off+h.size() <= fileLen {
			if b, err := r.at(seg, off, int(h.size()), fileLen); err == nil && crc(b[headerLen:]) == h.bodyCRC {
				res.sealed = true
				if h.bodyLen == sealBody {
					res.seal = parseSeal(b[headerLen:])
				}
				return res, nil
			}
		}
		// Damage at off: is there intact data after it?
		next, nh, err := r.resync(seg, off, fileLen, last)
		if err != nil {
			return res, err
		}
		hdrOK := h.kind == kindMessage && h.bodyLen > 0
		if next < 0 {
			// How many entries the tail held is known only from what
			// follows the segment (see checkLane): one at least.
			rec := Recovery{Kind: DamageTornTail, Segment: seg.path, Offset: off, Bytes: fileLen - off,
				Entries: 1, FirstSeq: last + 1, LastSeq: last + 1, Records: 1, Truncated: true}
			if hdrOK {
				rec.Records, rec.RecordsExact = int64(h.records), true
			}
			res.tail = &rec
			return res, nil
		}
		lost := int64(nh.seq - last - 1)
		rec := Recovery{Kind: DamageEntries, Segment: seg.path, Offset: off, Bytes: next - off,
			Entries: lost, FirstSeq: last + 1, LastSeq: nh.seq - 1, Records: lost}
		if hdrOK && lost == 1 {
			rec.Records, rec.RecordsExact = int64(h.records), true
		}
		res.damage = append(res.damage, rec)
		res.bad = append(res.bad, span{off, next})
		off = next
	}
	return res, nil
}

// loadSegment opens what a segment holds without scanning it when its seal
// is intact. The lane's last segment is scanned (it has no seal while it
// takes appends); repair cuts a torn tail off it. A segment that is not the
// last and has no intact seal is scanned and treated as sealed.
func loadSegment(path string, base uint64, last, repair bool, hooks *hooks) (*segment, []Recovery, error) {
	seg := &segment{base: base, path: path}
	flag := os.O_RDONLY
	if last && repair {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, nil, err
	}
	seg.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	size := st.Size()
	if size >= fileHeaderLen+sealLen {
		var tail [sealLen]byte
		if _, err := f.ReadAt(tail[:], size-sealLen); err == nil {
			if h, ok := parseHeader(tail[:]); ok && h.kind == kindSeal && h.bodyLen == sealBody && crc(tail[headerLen:]) == h.bodyCRC {
				seg.sealed = true
				seg.sum = parseSeal(tail[headerLen:])
				seg.size = size - sealLen
				seg.wsize, seg.wsum = seg.size, seg.sum
				seg.close()
				return seg, nil, nil
			}
		}
	}
	var recs []Recovery
	if size < fileHeaderLen {
		seg.close()
		if last {
			// Not even the file header made it: a segment created just
			// before a crash, or on a full disk. It holds nothing: remove
			// it, which needs no space, rather than write its header; the
			// writer makes it again when it needs it.
			if repair {
				if err := os.Remove(path); err != nil {
					return nil, nil, err
				}
			}
			return nil, []Recovery{{Segment: path, Bytes: size, Truncated: repair, Kind: DamageEmptySegment}}, nil
		}
		// In the middle of a lane: the entries it held are lost; the lane
		// counts them from its neighbours (see checkLane).
		seg.sealed = true
		seg.size, seg.wsize = fileHeaderLen, fileHeaderLen
		return seg, []Recovery{{Segment: path, Bytes: size, Kind: DamageSegment, Truncated: true}}, nil
	}
	res, err := scan(seg, size)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("spool: scan %s: %w", path, err)
	}
	seg.sum, seg.size, seg.bad = res.sum, res.end, res.bad
	seg.sealed = res.sealed || !last
	recs = append(recs, res.damage...)
	if res.tail != nil {
		cut := repair && last && !res.sealed
		res.tail.Truncated = cut
		recs = append(recs, *res.tail)
		if cut {
			if err := hookErr(hooks, opTruncate, path); err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("spool: cut torn tail of %s: %w", path, err)
			}
			if err := f.Truncate(res.end); err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("spool: cut torn tail of %s: %w", path, err)
			}
		}
	}
	seg.wsize, seg.wsum = seg.size, seg.sum
	if seg.sealed || !repair {
		seg.close()
	}
	return seg, recs, nil
}

// createSegment makes a new, empty segment file. A file whose header could
// not be written (a full disk) is removed again: left behind, it would be
// a segment that is not one.
func (st *store) createSegment(dir string, base uint64, syncDir bool) (*segment, error) {
	path := filepath.Join(dir, segName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	err = st.hookErr(opCreate, path)
	if err == nil {
		_, err = f.WriteAt(segHeader(base), 0)
	}
	if err != nil {
		f.Close()
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			// Open removes it (see loadSegment).
			st.ioError("remove", path, rerr)
		}
		return nil, err
	}
	if syncDir {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
		if err := fsyncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &segment{base: base, path: path, f: f, size: fileHeaderLen, wsize: fileHeaderLen}, nil
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	return err
}
