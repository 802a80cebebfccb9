package line

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// tail follows one file: appends, rotation by rename (the old file is read
// to its end, for rotate_wait, before the new one is opened) and
// copytruncate (the file shrinks, or its first bytes or the bytes before
// the read position change). A truncation is looked for after every read,
// not only at the end of the file, so a burst written after a truncation
// is never read at the old offset. After a truncation the rest of the old
// content is read from logrotate's copy next to the file (found by its
// first bytes: NAME.1, a dated name), then every newer numbered copy
// (NAME.k-1 … NAME.1), then the file from its start. After each emitted
// batch it commits the offset after the batch's last line, so a restart
// re-reads at most the batch that was in flight: at-least-once, and exactly
// once across a graceful stop.
type tail struct {
	l        *Line
	path     string
	pathHash uint64
	store    *offsetStore
	saved    fileState // last committed
	have     bool      // saved holds a committed state

	f         *os.File // what is read: the file, or a copy of it; nil while the file does not exist
	fname     string   // the name f was opened by
	id        fileID   // the tailed file's identity (also while a copy is read)
	p         *parse.Parser
	pos       int64 // read position in f
	off       int64 // offset in f after the last complete line taken
	partial   []byte
	skipping  bool      // inside an over-long line, up to its newline
	rotatedAt time.Time // when the name was seen pointing elsewhere; zero otherwise
	waiting   bool      // reported that the file is missing

	// What was read, to tell a truncation: the first bytes of f (up to
	// headMax) and the bytes just before pos (up to markTail).
	head, mark []byte
	seen       int64 // the largest size of the file seen, to count what a truncation cut off

	// While a copy is read, live is the truncated file, read from its start
	// once the copies are done.
	live    *os.File
	inCopy  bool
	lastGen fileID // the copy read last, to find newer ones
	hasGen  bool
	// done holds the files read to their end (the last doneMax): a copy
	// among them is never read again, whatever its name says.
	done []fileID

	buf, chk []byte
	b        bus.Batch
}

// markTail is how many bytes before the read position are compared to
// tell a file truncated and regrown past it from one that grew.
const markTail = 64

func newTail(l *Line, path string) (*tail, error) {
	if err := checkDir(path); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	dir, err := l.env.DataDir()
	if err != nil {
		return nil, err
	}
	store, saved, have, err := openOffsets(dir)
	if err != nil {
		return nil, err
	}
	t := &tail{l: l, path: path, pathHash: hashString(path), store: store, saved: saved, have: have,
		buf: make([]byte, 64<<10), chk: make([]byte, headMax)}
	if have && saved.PathHash != t.pathHash {
		l.env.Logger.Info("file path changed since the offset was stored; starting over", "file", path)
		t.have = false
	}
	return t, nil
}

// run tails until Stop. An error (an emit that failed, a file that cannot
// be read) returns to the Env, which restarts run after a back-off; run
// starts again from the last committed offset.
func (t *tail) run(context.Context) error {
	err := t.loop(t.l.ctx)
	t.closeFile()
	if t.l.ctx.Err() != nil { // stopped: run is not called again
		if cerr := t.store.close(); cerr != nil && err == nil {
			t.l.env.Error(cerr)
		}
		return nil
	}
	return err
}

func (t *tail) loop(ctx context.Context) error {
	if err := t.resume(); err != nil {
		return err
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		busy, err := t.step()
		if err != nil {
			return err
		}
		if busy {
			continue
		}
		timer.Reset(t.l.PollInterval.D())
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// resume opens the file the committed state points at and positions it, or
// picks the start of a file never read.
func (t *tail) resume() error {
	t.closeFile()
	t.b.Reset()
	fi, err := os.Stat(t.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file %s: %w", t.path, err)
	}
	exists := err == nil
	if t.have {
		t.lastGen, t.hasGen = t.saved.Gen, t.saved.HasGen
	}
	if !t.have {
		if !exists {
			t.setWaiting()
			return nil
		}
		if err := t.open(t.path, 0); err != nil {
			return err
		}
		if t.l.StartAt == "end" {
			size := fi.Size()
			t.pos, t.off = size, size
			if size > 0 {
				last := make([]byte, 1)
				if _, err := t.f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
					t.skipping = true // the rest of a line begun before the start
				}
			}
			t.loadMarks()
		}
		return t.commit() // pin the start: lines appended while ferry is down are not skipped
	}
	if exists && fileIDOf(fi) == t.saved.ID {
		return t.openAt(t.path, t.saved)
	}
	// The name points elsewhere: the file was rotated while ferry was down.
	// Finish the old one first, if it is still in the directory.
	// The name is looked up again when a rotation renamed it between the
	// search and the open.
	for attempt := range 100 {
		old := findByID(filepath.Dir(t.path), t.saved.ID)
		if old == "" {
			if attempt < 5 {
				continue // maybe renamed while listed
			}
			break
		}
		if err := t.open(old, 0); err != nil {
			continue
		}
		if t.id != t.saved.ID {
			continue
		}
		t.l.env.Logger.Info("file was rotated while stopped; reading the rest of the old one first", "file", t.path, "old", old)
		if err := t.openAt(old, t.saved); err != nil {
			return err
		}
		t.rotatedAt = time.Now()
		return nil
	}
	t.l.env.Logger.Warn("file was rotated while stopped and its old file is gone; lines written to it after the stored offset are lost",
		"file", t.path, "offset", t.saved.Off)
	if !exists {
		t.setWaiting()
		return nil
	}
	if err := t.open(t.path, 0); err != nil {
		return err
	}
	return t.commit()
}

// openAt opens name and positions it at st's offset when it is still the
// same content. When it was truncated meanwhile (copytruncate while ferry
// was stopped), the rest is read from the copy first, when one is found.
func (t *tail) openAt(name string, st fileState) error {
	if t.f == nil || t.fname != name {
		if err := t.open(name, 0); err != nil {
			return err
		}
	}
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("file %s: %w", name, err)
	}
	if fi.Size() < st.Off || !t.headMatches(t.f, st.HeadLen, st.Head) {
		g := t.findCopy(st.HeadLen, st.Head)
		if g == nil {
			t.l.env.Logger.Warn("file was truncated while stopped and no copy of it was found next to it; reading it from the start; lines written after the stored offset are lost",
				"file", name, "offset", st.Off)
			t.markGens()
			return t.commit()
		}
		t.l.env.Logger.Info("file was truncated while stopped; reading the rest from its copy first", "file", name, "copy", g.Name())
		t.enterCopy(g)
		t.pos, t.off = st.Off, st.Off
		t.loadMarks()
		return t.primeHeader()
	}
	t.pos, t.off = st.Off, st.Off
	t.loadMarks()
	return t.primeHeader()
}

// open opens name at offset off with a fresh parser (a CSV header belongs
// to its file).
func (t *tail) open(name string, off int64) error {
	t.closeFile()
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("file %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("file %s: %w", name, err)
	}
	t.f, t.fname, t.id = f, name, fileIDOf(fi)
	if err := t.restart(off); err != nil {
		return err
	}
	t.rotatedAt = time.Time{}
	t.waiting = false
	t.markGens()
	t.l.env.Up()
	return nil
}

// restart positions f at off (0 but when resuming) with a fresh parser and
// nothing read.
func (t *tail) restart(off int64) error {
	p, err := parse.New(t.l.Parse)
	if err != nil {
		return err
	}
	t.p = p
	t.pos, t.off = off, off
	t.partial, t.skipping = t.partial[:0], false
	t.head, t.mark, t.seen = t.head[:0], t.mark[:0], 0
	return nil
}

// loadMarks reads the head and the bytes before pos of f, after it was
// positioned somewhere other than 0.
func (t *tail) loadMarks() {
	t.head = readAt(t.f, t.head[:0], 0, min(t.pos, headMax))
	from := max(0, t.pos-markTail)
	t.mark = readAt(t.f, t.mark[:0], from, t.pos-from)
}

func readAt(f *os.File, dst []byte, off, n int64) []byte {
	dst = slices.Grow(dst[:0], int(n))[:n]
	m, _ := f.ReadAt(dst, off)
	return dst[:m]
}

// primeHeader feeds a CSV header to the parser when reading resumes past
// the file's first line.
func (t *tail) primeHeader() error {
	if !t.l.Parse.Header || t.l.Parse.Format != "csv" || t.off == 0 {
		return nil
	}
	lr := newLineReader(io.NewSectionReader(t.f, 0, t.off), int(t.l.MaxLine))
	line, _, err := lr.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("file %s: header: %w", t.fname, err)
	}
	var none bus.Batch
	return t.p.ParseLine(line, t.path, &none)
}

func (t *tail) closeFile() {
	if t.f != nil {
		_ = t.f.Close()
		t.f = nil
	}
	if t.live != nil {
		_ = t.live.Close()
		t.live = nil
	}
	t.inCopy = false
}

func (t *tail) setWaiting() {
	if !t.waiting {
		t.waiting = true
		t.l.env.Down(fmt.Errorf("file %s does not exist (yet); waiting for it", t.path))
	}
}

// step reads what is there. It reports whether it made progress, so the
// caller polls again at once instead of waiting.
func (t *tail) step() (bool, error) {
	if t.f == nil {
		return t.reopen()
	}
	n, err := t.f.ReadAt(t.buf, t.pos)
	if n > 0 {
		data := t.buf[:n]
		if !t.inCopy && t.rotatedAt.IsZero() {
			// Checked after the read: a truncation before it or during it
			// shows now, and what was read is dropped, not taken at the
			// wrong offset.
			cut, err := t.truncated(t.pos + int64(n))
			if err != nil {
				return false, err
			}
			if cut {
				return true, t.onTruncate()
			}
			if t.pos == 0 && t.hasGen {
				if g := t.newerCopy(); g != nil && !agrees(g, data) {
					// The file was truncated again after the last copy was
					// read and before this read: that copy comes first.
					t.l.env.Logger.Info("file truncated again; reading its copy first", "file", t.path, "copy", g.Name())
					t.live, t.f = t.f, nil
					return true, t.readCopy(g)
				} else if g != nil {
					_ = g.Close()
				}
			}
		}
		base := t.pos
		t.pos += int64(n)
		t.noteRead(data, base)
		if err := t.consume(data, base); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("file %s: read: %w", t.fname, err)
	}
	if t.inCopy {
		return true, t.endCopy()
	}
	// At the end: emit what was gathered, then look for rotation.
	if err := t.flush(); err != nil {
		return false, err
	}
	return t.checkRotation()
}

// noteRead keeps the head and the bytes before pos up to date.
func (t *tail) noteRead(data []byte, base int64) {
	if base < headMax && int64(len(t.head)) == base {
		t.head = append(t.head, data[:min(int64(len(data)), headMax-base)]...)
	}
	if len(data) >= markTail {
		t.mark = append(t.mark[:0], data[len(data)-markTail:]...)
		return
	}
	t.mark = append(t.mark, data...)
	if over := len(t.mark) - markTail; over > 0 {
		t.mark = append(t.mark[:0], t.mark[over:]...)
	}
}

// truncated reports whether the file no longer holds what was read: it is
// shorter than upto, or its first bytes or those before pos changed. The
// bytes before pos catch a file truncated and rewritten past the old offset
// whose first bytes happen to be the same (a long CSV header).
func (t *tail) truncated(upto int64) (bool, error) {
	fi, err := t.f.Stat()
	if err != nil {
		return false, fmt.Errorf("file %s: %w", t.fname, err)
	}
	if fi.Size() < upto {
		return true, nil
	}
	if !t.same(0, t.head) || !t.same(t.pos-int64(len(t.mark)), t.mark) {
		return true, nil
	}
	t.seen = max(t.seen, fi.Size())
	return false, nil
}

// same reports whether f holds b at off.
func (t *tail) same(off int64, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	got := t.chk[:len(b)]
	n, _ := t.f.ReadAt(got, off)
	return n == len(b) && bytes.Equal(got, b)
}

// onTruncate is called when the file was cut back (copytruncate). The rest
// of the old content is read from the copy logrotate made next to it, when
// it is found; then the file is read from its start.
func (t *tail) onTruncate() error {
	g := t.findCopy(uint32(len(t.head)), hashBytes(t.head))
	if g == nil && t.pos == 0 {
		// Nothing read yet (the truncation came between a read and its
		// check), so nothing to recognise the copy by: as at the end of an
		// unread file, the copy made since the last one holds what the
		// truncation took.
		g = t.newerCopy()
	}
	if g == nil {
		lost := t.seen - t.pos
		t.lost(lost)
		t.l.env.Logger.Warn("file truncated and no copy of it found next to it; reading it from the start; lines written after the last read are lost",
			"file", t.path, "offset", t.off, "lost_bytes", max(lost, 0))
		t.partial = t.partial[:0] // the rest of that line is gone
		if err := t.restart(0); err != nil {
			return err
		}
		// The copies there now are older than the file's new start: what
		// they hold was read, or is counted lost just above. Without this,
		// a tail that had not yet read a copy would take the oldest one as
		// unread and read it again.
		t.hasGen = false
		t.markGens()
		return t.commit()
	}
	fi, err := g.Stat()
	if err != nil {
		_ = g.Close()
		return fmt.Errorf("file %s: copy %s: %w", t.path, g.Name(), err)
	}
	// Bytes the file was seen to hold beyond both what was read and what
	// the copy holds were written between logrotate's copy and its
	// truncate: nobody has them.
	t.lost(t.seen - max(fi.Size(), t.pos))
	t.l.env.Logger.Info("file truncated; reading the rest from its copy", "file", t.path, "copy", g.Name(), "offset", t.pos)
	t.live = t.f
	t.enterCopy(g)
	return nil
}

// lost counts bytes a truncation cut off before they were read.
func (t *tail) lost(n int64) {
	if n > 0 {
		t.l.lostBytes.Add(float64(n))
		t.l.env.Error(fmt.Errorf("file %s: %d bytes written between the copy and the truncation of a copytruncate are lost", t.path, n))
	}
}

// enterCopy reads g (a copy of the tailed file, or a file rotated away by
// rename) from the current position. The committed identity is the
// copy's, so a restart finds it again by its inode, as it finds a file
// rotated by rename, and goes on from there.
func (t *tail) enterCopy(g *os.File) {
	if t.live == nil {
		t.live = t.f
	}
	t.f, t.fname, t.inCopy = g, g.Name(), true
	if fi, err := g.Stat(); err == nil {
		t.id, t.lastGen, t.hasGen = fileIDOf(fi), fileIDOf(fi), true
	}
}

// readCopy reads a newer copy g from its start with a fresh parser.
func (t *tail) readCopy(g *os.File) error {
	if t.f != nil && t.f != t.live {
		_ = t.f.Close()
	}
	t.f = nil
	t.enterCopy(g)
	return t.restart(0)
}

// endCopy is called at the end of a copy: its last line counts without a
// newline (nothing will complete it). Then a newer copy, if there is one,
// or the truncated file from its start.
func (t *tail) endCopy() error {
	if len(t.partial) > 0 && !t.skipping {
		t.l.parseLine(t.p, t.partial, t.path, &t.b)
	}
	t.partial, t.off = t.partial[:0], t.pos
	if err := t.flush(); err != nil {
		return err
	}
	t.finished(t.id)
	if g := t.newerCopy(); g != nil {
		if !t.copyOfLive(g) {
			t.l.env.Logger.Info("reading a newer copy", "file", t.path, "copy", g.Name())
			return t.readCopy(g)
		}
		_ = g.Close()
	}
	_ = t.f.Close()
	t.f, t.fname, t.live, t.inCopy = t.live, t.path, nil, false
	if t.f == nil { // after a rename rotation: the file at the path is next
		_, err := t.reopen()
		return err
	}
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("file %s: %w", t.path, err)
	}
	t.id = fileIDOf(fi)
	if err := t.restart(0); err != nil {
		return err
	}
	return t.commit()
}

// agrees reports whether copy g and data (the start of the file) hold the
// same bytes as far as both go: g is then a copy of the content being
// read (made after this read, or still being made), not an older one. An
// empty g agrees: it holds nothing to read.
func agrees(g *os.File, data []byte) bool {
	n := min(len(data), headMax)
	got := make([]byte, n)
	m, _ := g.ReadAt(got, 0)
	return bytes.Equal(got[:m], data[:m])
}

// copyOfLive reports whether g may be a copy of the file's current
// content (logrotate still copying, or not truncated yet): the file is not
// empty and starts as g does. Such a copy is not read now; once the file
// is truncated, the head of what was read finds it.
func (t *tail) copyOfLive(g *os.File) bool {
	if t.live == nil {
		return false
	}
	fi, err := t.live.Stat()
	if err != nil || fi.Size() == 0 {
		return false
	}
	start := make([]byte, min(fi.Size(), headMax))
	n, _ := t.live.ReadAt(start, 0)
	return agrees(g, start[:n])
}

// consume splits data (read at offset base) into lines.
func (t *tail) consume(data []byte, base int64) error {
	max := int(t.l.MaxLine)
	at := base
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !t.skipping {
				t.partial = append(t.partial, data...)
				if len(t.partial) > max {
					t.tooLong()
				}
			}
			return nil
		}
		seg := data[:i]
		data = data[i+1:]
		at += int64(i) + 1
		if t.skipping {
			t.skipping = false
			t.off = at
			continue
		}
		line := seg
		if len(t.partial) > 0 {
			t.partial = append(t.partial, seg...)
			line = t.partial
		}
		if len(line) > max {
			t.tooLong()
			t.skipping = false
		} else {
			t.l.parseLine(t.p, line, t.path, &t.b)
		}
		t.partial = t.partial[:0]
		t.off = at
		if len(t.b.Records) >= t.l.BatchSize {
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *tail) tooLong() {
	t.partial = t.partial[:0]
	t.skipping = true
	t.l.parseError(t.path, fmt.Errorf("%w: %w: more than max_line (%d bytes)", parse.ErrParse, ErrLineTooLong, t.l.MaxLine))
}

// flush emits the gathered records, then commits the offset after their
// last line. Emit returning means the bus took the batch.
func (t *tail) flush() error {
	if len(t.b.Records) > 0 {
		if err := t.l.env.Emit(t.l.env.Context(), &t.b); err != nil {
			return err
		}
		t.b.Reset()
	}
	if t.off == t.saved.Off && t.id == t.saved.ID && t.have && uint32(len(t.head)) == t.saved.HeadLen && t.lastGen == t.saved.Gen {
		return nil
	}
	return t.commit()
}

// commit stores the current file and offset durably. While a copy is read,
// the identity is the tailed file's and the head and offset the copy's: a
// restart finds the file truncated and the copy by its head.
func (t *tail) commit() error {
	var size int64
	if fi, err := t.f.Stat(); err == nil {
		size = fi.Size()
	}
	st := fileState{PathHash: t.pathHash, ID: t.id, Off: t.off, Size: size, HeadLen: uint32(len(t.head)), Head: hashBytes(t.head),
		Gen: t.lastGen, HasGen: t.hasGen}
	if err := t.store.save(st); err != nil {
		return err
	}
	t.saved, t.have = st, true
	return nil
}

// headMatches reports whether f still starts with the bytes the checksum
// was taken over.
func (t *tail) headMatches(f *os.File, n uint32, sum uint64) bool {
	if n == 0 {
		return true
	}
	if n > headMax {
		return false
	}
	buf := t.chk[:n]
	if _, err := f.ReadAt(buf, 0); err != nil {
		return false
	}
	return hashBytes(buf) == sum
}

// checkRotation is called at the end of the open file. It reports whether
// there is something new to read.
func (t *tail) checkRotation() (bool, error) {
	if t.rotatedAt.IsZero() {
		fi, err := os.Stat(t.path)
		if err != nil || fileIDOf(fi) != t.id {
			// Renamed (and maybe recreated) or removed: keep reading the old
			// file for rotate_wait, for a writer that has not reopened yet.
			t.rotatedAt = time.Now()
			t.l.env.Logger.Info("file rotated; finishing the old one", "file", t.path)
			return true, nil
		}
		cut, err := t.truncated(t.pos)
		if err != nil {
			return false, err
		}
		if cut {
			return true, t.onTruncate()
		}
		if t.pos == 0 && t.hasGen {
			// Nothing read, so no truncation can show in the content: a
			// copy made since the file was opened holds lines never read.
			if g := t.newerCopy(); g != nil {
				t.live = t.f
				if t.copyOfLive(g) {
					t.live = nil
					_ = g.Close()
					return false, nil
				}
				t.l.env.Logger.Info("file was copied and truncated before it was read; reading the copy", "file", t.path, "copy", g.Name())
				t.f = nil
				return true, t.readCopy(g)
			}
		}
		return false, nil
	}
	if time.Since(t.rotatedAt) < t.l.RotateWait.D() {
		return false, nil
	}
	// The old file is done. Its last line counts even without a newline:
	// nothing will complete it.
	if len(t.partial) > 0 && !t.skipping {
		t.l.parseLine(t.p, t.partial, t.path, &t.b)
	}
	t.partial, t.off = t.partial[:0], t.pos
	if err := t.flush(); err != nil {
		return false, err
	}
	t.lastGen, t.hasGen = t.id, true
	t.finished(t.id)
	t.closeFile()
	// Rotated twice within rotate_wait: the generation between the old
	// file and the new one comes first.
	if g := t.newerCopy(); g != nil {
		t.l.env.Logger.Info("reading a newer rotated file", "file", t.path, "rotated", g.Name())
		return true, t.readCopy(g)
	}
	return t.reopen()
}

// reopen opens the file at the path from its start, or waits for it to
// appear; it reports whether it made progress, as step does.
func (t *tail) reopen() (bool, error) {
	if _, err := os.Stat(t.path); err != nil {
		t.setWaiting()
		return false, nil
	}
	if err := t.open(t.path, 0); err != nil {
		return false, err
	}
	return true, t.commit()
}

// markGens notes the newest numbered copy when the file is read from its
// start with nothing read yet: a copy newer than it holds lines written
// to the file before this tail read any of them (rotated before the first
// poll), found without a head to recognise it by.
func (t *tail) markGens() {
	if t.hasGen {
		return // the copy read last is the reference
	}
	t.lastGen, t.hasGen = fileID{}, true
	if fi, err := os.Stat(t.path + ".1"); err == nil {
		t.lastGen = fileIDOf(fi)
	}
}

func fileIDOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{Dev: uint64(st.Dev), Ino: st.Ino}
	}
	return fileID{}
}

// findByID looks in dir for the file with id (a rotated file under its new
// name) and returns its path, or "".
func findByID(dir string, id fileID) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err == nil && fileIDOf(fi) == id {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// compressed are the suffixes of copies that cannot be read as text.
var compressed = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"}

// copyNames lists the files next to the tailed one that can be its
// copies: NAME.N, NAME-DATE, STEM-DATE.EXT (logrotate's numbered and
// dateext names), not compressed ones.
func (t *tail) copyNames() []string {
	dir, base := filepath.Split(t.path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if n == base || !e.Type().IsRegular() || !(strings.HasPrefix(n, base+".") || strings.HasPrefix(n, base+"-") || strings.HasPrefix(n, stem+"-")) {
			continue
		}
		if slices.ContainsFunc(compressed, func(s string) bool { return strings.HasSuffix(n, s) }) {
			continue
		}
		names = append(names, filepath.Join(dir, n))
	}
	return names
}

// findCopy returns the copy of the tailed file whose first n bytes have
// checksum sum, open, or nil. When several match, the newest wins. A name
// that vanished between the listing and its open was renamed by a
// rotation shifting the copies (NAME.1 to NAME.2) at that moment: the
// directory is listed again, or the copy would be missed, its lines
// counted lost, and the "oldest copy" rule would read it again later.
func (t *tail) findCopy(n uint32, sum uint64) *os.File {
	if n == 0 {
		return nil // nothing read: nothing to recognise it by
	}
	for attempt := 0; ; attempt++ {
		best, moved := t.findCopyOnce(n, sum)
		if best != nil || !moved || attempt == 4 {
			return best
		}
	}
}

func (t *tail) findCopyOnce(n uint32, sum uint64) (best *os.File, moved bool) {
	var bestT time.Time
	for _, name := range t.copyNames() {
		f, err := os.Open(name)
		if err != nil {
			moved = moved || errors.Is(err, fs.ErrNotExist)
			continue
		}
		fi, err := f.Stat()
		if err != nil || fileIDOf(fi) == t.id || !t.headMatches(f, n, sum) {
			_ = f.Close()
			continue
		}
		if best == nil || fi.ModTime().After(bestT) {
			if best != nil {
				_ = best.Close()
			}
			best, bestT = f, fi.ModTime()
			continue
		}
		_ = f.Close()
	}
	return best, moved
}

// newerCopy returns, open, the numbered copy one generation newer than the
// copy read last (NAME.k-1 after NAME.k), or, when no copy existed as the
// file was first read, the oldest one there now; nil when there is none or
// it is the file being read. A rotation that shifts the names meanwhile is
// seen by the identity checks, and the names are looked up again.
func (t *tail) newerCopy() *os.File {
	if !t.hasGen {
		return nil
	}
	statID := func(k int) (fileID, bool) {
		fi, err := os.Stat(fmt.Sprintf("%s.%d", t.path, k))
		if err != nil {
			return fileID{}, false
		}
		return fileIDOf(fi), true
	}
	for attempt := range 100 {
		target, prev := -1, fileID{}
		moved := false // a listed copy was gone by its stat: renamed meanwhile
		for _, name := range t.copyNames() {
			n, ok := genNumber(t.path, name)
			if !ok {
				continue
			}
			id, ok := statID(n)
			if !ok {
				moved = true
				continue
			}
			if t.lastGen == (fileID{}) && n > target {
				target = n
			}
			if t.lastGen != (fileID{}) && id == t.lastGen {
				target, prev = n-1, id
			}
		}
		switch {
		case target < 0 && t.lastGen != (fileID{}) && attempt < 20 && findByID(filepath.Dir(t.path), t.lastGen) != "":
			// Still there, so renamed while listed: rotations in quick
			// succession shift every copy's name, and a listing can miss
			// the one read last several times running. Taken for "none
			// newer", the copies between it and the file would never be
			// read. (Gone, compressed or deleted, it is not looked for
			// again.)
			continue
		case target < 1 && moved && attempt < 20:
			// A rotation was shifting the copies (NAME.1 to NAME.2) as
			// they were listed. Taken for "no copy", the caller would
			// read the file on and never come back for the copy.
			continue
		case target < 1:
			return nil
		}
		f, err := os.Open(fmt.Sprintf("%s.%d", t.path, target))
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		id := fileIDOf(fi)
		now, ok := statID(target)
		next, hasNext := statID(target + 1)
		consistent := err == nil && ok && now == id
		if t.lastGen == (fileID{}) {
			consistent = consistent && !hasNext
		} else {
			consistent = consistent && hasNext && next == prev
		}
		if !consistent {
			_ = f.Close()
			continue
		}
		if t.lastGen != (fileID{}) && bornBefore(f, fmt.Sprintf("%s.%d", t.path, target+1)) {
			// Named as newer, created before: not logrotate's numbering
			// (a file renamed by hand); nothing to read between.
			_ = f.Close()
			return nil
		}
		if id == t.id || id == t.lastGen || id == t.liveID() || slices.Contains(t.done, id) {
			// The file being read, or the one to read after the copies
			// (renamed meanwhile): nothing lies between.
			_ = f.Close()
			return nil
		}
		return f
	}
	return nil
}

// doneMax bounds the files remembered as read to their end.
const doneMax = 64

func (t *tail) finished(id fileID) {
	if len(t.done) == doneMax {
		t.done = append(t.done[:0], t.done[1:]...)
	}
	t.done = append(t.done, id)
}

// liveID is the identity of the file to go back to after the copies.
func (t *tail) liveID() fileID {
	if t.live == nil {
		return fileID{}
	}
	fi, err := t.live.Stat()
	if err != nil {
		return fileID{}
	}
	return fileIDOf(fi)
}

// genNumber reads N of NAME.N.
func genNumber(path, name string) (int, bool) {
	s, ok := strings.CutPrefix(name, path+".")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}
