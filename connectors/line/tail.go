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
	"syscall"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// tail follows one file: appends, rotation by rename (the old file is read
// to its end, for rotate_wait, before the new one is opened) and
// copytruncate (the file shrinks, or its first bytes change: it is read
// again from the start). After each emitted batch it commits the offset
// after the batch's last line, so a restart re-reads at most the batch that
// was in flight: at-least-once, and exactly once across a graceful stop.
type tail struct {
	l        *Line
	path     string
	pathHash uint64
	store    *offsetStore
	saved    fileState // last committed
	have     bool      // saved holds a committed state

	f         *os.File // nil while the file does not exist
	fname     string   // the name f was opened by
	id        fileID
	p         *parse.Parser
	pos       int64 // read position
	off       int64 // offset after the last complete line taken
	partial   []byte
	skipping  bool // inside an over-long line, up to its newline
	headLen   uint32
	head      uint64
	rotatedAt time.Time // when the name was seen pointing elsewhere; zero otherwise
	waiting   bool      // reported that the file is missing

	buf []byte
	b   bus.Batch
}

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
	t := &tail{l: l, path: path, pathHash: hashString(path), store: store, saved: saved, have: have, buf: make([]byte, 64<<10)}
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
		}
		return t.commit() // pin the start: lines appended while ferry is down are not skipped
	}
	if exists && fileIDOf(fi) == t.saved.ID {
		return t.openAt(t.path, t.saved)
	}
	// The name points elsewhere: the file was rotated while ferry was down.
	// Finish the old one first, if it is still in the directory.
	if old := findByID(filepath.Dir(t.path), t.saved.ID); old != "" {
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
// same content, or at 0 when it was truncated meanwhile.
func (t *tail) openAt(name string, st fileState) error {
	if err := t.open(name, 0); err != nil {
		return err
	}
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("file %s: %w", name, err)
	}
	if fi.Size() < st.Off || !t.headMatches(st.HeadLen, st.Head) {
		t.l.env.Logger.Info("file was truncated while stopped; reading it from the start", "file", name)
		return t.commit()
	}
	t.pos, t.off = st.Off, st.Off
	t.headLen, t.head = st.HeadLen, st.Head
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
	p, err := parse.New(t.l.Parse)
	if err != nil {
		_ = f.Close()
		return err
	}
	t.f, t.fname, t.id, t.p = f, name, fileIDOf(fi), p
	t.pos, t.off = off, off
	t.partial, t.skipping = t.partial[:0], false
	t.headLen, t.head = 0, 0
	t.rotatedAt = time.Time{}
	t.waiting = false
	t.l.env.Up()
	return nil
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
		base := t.pos
		t.pos += int64(n)
		if err := t.consume(t.buf[:n], base); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("file %s: read: %w", t.fname, err)
	}
	// At the end: emit what was gathered, then look for rotation.
	if err := t.flush(); err != nil {
		return false, err
	}
	return t.checkRotation()
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
	if t.off == t.saved.Off && t.id == t.saved.ID && t.have {
		return nil
	}
	return t.commit()
}

// commit stores the current file and offset durably.
func (t *tail) commit() error {
	if t.headLen < headMax && t.off > int64(t.headLen) {
		n := min(t.off, headMax)
		buf := make([]byte, n)
		if _, err := t.f.ReadAt(buf, 0); err == nil {
			t.headLen, t.head = uint32(n), hashBytes(buf)
		}
	}
	var size int64
	if fi, err := t.f.Stat(); err == nil {
		size = fi.Size()
	}
	st := fileState{PathHash: t.pathHash, ID: t.id, Off: t.off, Size: size, HeadLen: t.headLen, Head: t.head}
	if err := t.store.save(st); err != nil {
		return err
	}
	t.saved, t.have = st, true
	return nil
}

// headMatches reports whether the open file still starts with the bytes
// the checksum was taken over.
func (t *tail) headMatches(n uint32, sum uint64) bool {
	if n == 0 {
		return true
	}
	buf := t.buf[:n] // not in use: called between reads
	if _, err := t.f.ReadAt(buf, 0); err != nil {
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
		cur, err := t.f.Stat()
		if err != nil {
			return false, fmt.Errorf("file %s: %w", t.fname, err)
		}
		if cur.Size() < t.pos || !t.headMatches(t.headLen, t.head) {
			// copytruncate: the content was copied away and the file cut
			// back; what is there now is new.
			t.l.env.Logger.Info("file truncated; reading it from the start", "file", t.path)
			t.pos, t.off = 0, 0
			t.partial, t.skipping = t.partial[:0], false
			t.headLen, t.head = 0, 0
			p, err := parse.New(t.l.Parse)
			if err != nil {
				return false, err
			}
			t.p = p
			return true, t.commit()
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
	t.closeFile()
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
