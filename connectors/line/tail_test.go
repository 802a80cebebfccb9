package line

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
)

// appendTo appends text to path the way a logger that reopens its file
// does: open with O_APPEND (creating it), write, close.
func appendTo(t testing.TB, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// seqLines renders seq=from … seq=to, one per line.
func seqLines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "seq=%d\n", i)
	}
	return b.String()
}

// fileConfig is a tail of path with fast polling, small batches (many
// commits) and seq=N lines.
func fileConfig(path string, extra string) string {
	return "type: line\nfile: " + path + "\nstart_at: beginning\npoll_interval: 5ms\nrotate_wait: 20ms\nbatch_size: 7\n" +
		"parse: {format: kv, value_type: long}\n" + extra
}

func TestFileConformance(t *testing.T) {
	var garbage atomic.Int32
	var path string
	var mu sync.Mutex // the writer and Restart (a rotation) take turns
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			path = filepath.Join(t.TempDir(), "machine.log")
			l := mustDecode(t, "type: line\nfile: "+path+"\nstart_at: beginning\npoll_interval: 5ms\nrotate_wait: 10ms\n"+streamParse)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			t.Cleanup(func() { close(stop); wg.Wait() })
			p := path
			wg.Go(func() {
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					text := goodLine + "\n"
					if garbage.Load() > 0 {
						garbage.Add(-1)
						text = garbageLine + "\n" + text
					}
					mu.Lock()
					appendTo(t, p, text)
					mu.Unlock()
				}
			})
			return l
		},
		FailStart: func(t *testing.T) connectors.Connector {
			l := mustDecode(t, "type: line\nfile: relative.log\n"+streamParse)
			l.File = filepath.Join(t.TempDir(), "gone", "machine.log") // as if the dir vanished after validate
			return l
		},
		// For a file, the "device restart" is a rotation.
		Restart: func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
		},
		Malformed: func(*testing.T) { garbage.Add(1) },
	})
}

// TestTailNoLossNoDuplicates is the promise of the file tail: across
// restarts (a new connector instance on the same data dir), a rotation
// while stopped, a rotation while running, a writer still appending to the
// rotated file, and a line caught half-written, the records hold 1..N once
// each.
func TestTailNoLossNoDuplicates(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "machine.log")
	cfg := fileConfig(path, "")
	col := newCollector()
	newRun := func() *run { return start(t, mustDecode(t, cfg), "tail", data, col) }

	// A: 1..100, and half of the line of 101.
	appendTo(t, path, seqLines(1, 100)+"seq=10")
	a := newRun()
	col.wait(t, 100, 10*time.Second)
	// The rest of 101 and more; stop while they are being read.
	appendTo(t, path, "1\n"+seqLines(102, 150))
	a.stop(t)

	// While stopped: rotation; the writer still appends to the old file
	// before it reopens, then writes the new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".1", seqLines(151, 160))
	appendTo(t, path, seqLines(161, 220))

	// B picks up the rest of the old file, then the new one.
	b := newRun()
	col.wait(t, 220, 10*time.Second)
	// A rotation while running, and a restart in the middle of reading.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".2", seqLines(221, 230))
	appendTo(t, path, seqLines(231, 400))
	b.stop(t)

	c := newRun()
	col.wait(t, 400, 10*time.Second)
	c.stop(t)

	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), 400)
	if n := c.parseErrors(); n != 0 {
		t.Errorf("%v parse errors: a half-written line was taken before it was complete", n)
	}
}

// TestTailCopytruncate follows a file that is copied away and truncated in
// place, while running and while stopped (when the file has grown past the
// old offset again by the restart, only its first bytes tell).
func TestTailCopytruncate(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "machine.log")
	cfg := fileConfig(path, "")
	col := newCollector()
	copytruncate := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".1", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(t, path, seqLines(1, 50))
	a := start(t, mustDecode(t, cfg), "ct", data, col)
	col.wait(t, 50, 10*time.Second)
	copytruncate()
	appendTo(t, path, seqLines(51, 60)) // shorter than before: the size tells
	col.wait(t, 60, 10*time.Second)
	a.stop(t)

	copytruncate()
	appendTo(t, path, seqLines(61, 200)) // longer than the stored offset
	b := start(t, mustDecode(t, cfg), "ct", data, col)
	col.wait(t, 200, 10*time.Second)
	b.stop(t)
	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), 200)
}

// TestTailPartialAndLongLines: a line without its newline waits for it; a
// line longer than max_line is counted and skipped, also when it spans
// reads.
func TestTailPartialAndLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.log")
	appendTo(t, path, "seq=1\nseq=")
	col := newCollector()
	r := start(t, mustDecode(t, fileConfig(path, "max_line: 1KiB\n")), "part", t.TempDir(), col)
	col.wait(t, 1, 10*time.Second)
	appendTo(t, path, "2\n"+"seq="+strings.Repeat("9", 200<<10)+"\n"+"seq=3\n")
	col.wait(t, 3, 10*time.Second)
	r.stop(t)
	all, _ := col.snapshot()
	if got := values(t, all); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("values %v, want [1 2 3]", got)
	}
	if n := r.parseErrors(); n != 1 {
		t.Errorf("ferry_parse_errors_total = %v, want 1 (the long line)", n)
	}
}

// TestTailStartAtEnd skips what was there before the first start, but not
// what is appended while ferry is down afterwards.
func TestTailStartAtEnd(t *testing.T) {
	path, data := filepath.Join(t.TempDir(), "m.log"), t.TempDir()
	appendTo(t, path, seqLines(1, 10)+"seq=1") // old lines, and the start of one
	cfg := strings.Replace(fileConfig(path, ""), "start_at: beginning", "start_at: end", 1)
	col := newCollector()
	a := start(t, mustDecode(t, cfg), "end", data, col)
	waitPhase(t, a.env, connectors.PhaseUp)   // the start point is taken
	appendTo(t, path, "1\n"+seqLines(12, 15)) // 11 began before the start: skipped
	col.wait(t, 4, 10*time.Second)
	a.stop(t)
	appendTo(t, path, seqLines(16, 20))
	b := start(t, mustDecode(t, cfg), "end", data, col)
	col.wait(t, 9, 10*time.Second)
	b.stop(t)
	recs, _ := col.snapshot()
	if got := values(t, recs); fmt.Sprint(got) != "[12 13 14 15 16 17 18 19 20]" {
		t.Errorf("values %v, want 12..20", got)
	}
}

// TestTailWaitsForFile: a file that does not exist yet is a source that is
// down, not a failed start; once it appears it is read from its beginning.
func TestTailWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later.log")
	col := newCollector()
	cfg := strings.Replace(fileConfig(path, ""), "start_at: beginning", "start_at: end", 1)
	r := start(t, mustDecode(t, cfg), "later", t.TempDir(), col)
	waitPhase(t, r.env, connectors.PhaseDown)
	appendTo(t, path, seqLines(1, 3))
	col.wait(t, 3, 10*time.Second)
	waitPhase(t, r.env, connectors.PhaseUp)
}

// TestTailCSVHeaderAfterRestart: with header: true the header is the
// file's first line, also when reading resumes in the middle.
func TestTailCSVHeaderAfterRestart(t *testing.T) {
	path, data := filepath.Join(t.TempDir(), "m.csv"), t.TempDir()
	cfg := "type: line\nfile: " + path + "\nstart_at: beginning\npoll_interval: 5ms\nparse: {format: csv, header: true, value_type: long}\n"
	appendTo(t, path, "seq,other\n1,100\n2,100\n")
	col := newCollector()
	a := start(t, mustDecode(t, cfg), "csv", data, col)
	col.wait(t, 4, 10*time.Second)
	a.stop(t)
	appendTo(t, path, "3,100\n")
	b := start(t, mustDecode(t, cfg), "csv", data, col)
	recs := col.wait(t, 6, 10*time.Second)
	b.stop(t)
	if r := recs[4]; r.Tag != "seq" || r.Value.Long() != 3 {
		t.Errorf("after restart: %s=%v, want seq=3", r.Tag, r.Value)
	}
	if n := b.parseErrors(); n != 0 {
		t.Errorf("%v parse errors", n)
	}
}

// TestOffsetStoreTornWrite: a slot spoilt mid-write leaves the previous one.
func TestOffsetStoreTornWrite(t *testing.T) {
	dir := t.TempDir()
	s, _, have, err := openOffsets(dir)
	if err != nil || have {
		t.Fatalf("fresh store: have=%v err=%v", have, err)
	}
	for off := int64(1); off <= 3; off++ {
		if err := s.save(fileState{ID: fileID{Dev: 1, Ino: 2}, Off: off * 100}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.close()
	// Generation 3 is in slot 1: tear it.
	f, err := os.OpenFile(filepath.Join(dir, offsetFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff}, slotSize+20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	s, st, have, err := openOffsets(dir)
	if err != nil || !have || st.Off != 200 || st.ID.Ino != 2 {
		t.Fatalf("after a torn write: %+v have=%v err=%v, want offset 200", st, have, err)
	}
	// The next save overwrites the torn slot, not the good one.
	if err := s.save(fileState{Off: 400}); err != nil {
		t.Fatal(err)
	}
	_ = s.close()
	if _, st, _, _ := openOffsets(dir); st.Off != 400 {
		t.Errorf("offset %d after saving again, want 400", st.Off)
	}
}

// TestTailRotationEdges: the last line of a rotated file counts without its
// newline; a name that stays missing after a rotation makes the source
// wait; an old file deleted while ferry is stopped costs only its unread
// lines.
func TestTailRotationEdges(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "m.log")
	cfg := fileConfig(path, "")
	col := newCollector()
	appendTo(t, path, "seq=1\nseq=2")
	a := start(t, mustDecode(t, cfg), "edge", data, col)
	col.wait(t, 1, 10*time.Second)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	col.wait(t, 2, 10*time.Second) // taken once the old file is finished
	waitPhase(t, a.env, connectors.PhaseDown)
	appendTo(t, path, seqLines(3, 5))
	col.wait(t, 5, 10*time.Second)
	a.stop(t)

	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + ".2"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, seqLines(6, 8))
	b := start(t, mustDecode(t, cfg), "edge", data, col)
	col.wait(t, 8, 10*time.Second)
	b.stop(t)
	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), 8)
}
