package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// diskFull is a write hook: while full is set, the writes it names fail
// with ENOSPC, as on a full disk (a tmpfs to fill is not available in CI).
type diskFull struct {
	full  atomic.Bool
	only  string // fail only this op; "" for every write
	calls atomic.Int64
}

func (d *diskFull) hook(op, path string) error {
	d.calls.Add(1)
	if d.full.Load() && (d.only == "" || d.only == op) {
		return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
	}
	return nil
}

// logBuffer collects a logger's lines for tests.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriteFailureObservable: on a full disk Publish fails, and the failure
// is a state: counted in ferry_spool_write_errors_total, in Stats with the
// last error and its time, logged once when it starts and once when it
// ends (with the count), however many writes fail in between. When space
// returns the spool goes on by itself, in order, with nothing half-written.
func TestWriteFailureObservable(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			disk := &diskFull{}
			cfg.hooks = &hooks{write: disk.hook}
			var logs logBuffer
			s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			big := strings.Repeat("b", 4000) // 64KiB segments: a new one every ~15 entries
			var want []string
			for i := range 10 {
				m := msg(i)
				m.Payload = append(m.Payload, big...)
				want = append(want, string(m.Payload))
				publish(t, s, "t", m)
			}
			disk.full.Store(true)
			before := time.Now()
			const failures = 40 // several segments' worth: seals and creates fail too
			for i := range failures {
				m := msg(100 + i)
				m.Payload = append(m.Payload, big...)
				if err := s.Publish("t", m); !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("publish %d on a full disk: %v, want ENOSPC", i, err)
				}
			}
			st := s.Stats()
			if !st.WriteFailing || st.WriteErrors < failures || !strings.Contains(st.LastWriteError, "no space left") ||
				st.LastWriteErrorAt.Before(before) {
				t.Fatalf("stats on a full disk: failing %v, %d errors, last %q at %v",
					st.WriteFailing, st.WriteErrors, st.LastWriteError, st.LastWriteErrorAt)
			}
			if v := counterValue(t, reg, "ferry_spool_write_errors_total", "sink", "test"); v != float64(s.Stats().WriteErrors) {
				t.Fatalf("ferry_spool_write_errors_total = %v, Stats says %d", v, s.Stats().WriteErrors)
			}
			if n := logs.count("writes failing"); n != 1 {
				t.Fatalf("%d 'writes failing' lines for one failure:\n%s", n, logs.String())
			}
			// Nothing the failed rounds wrote is waiting or left as a
			// segment without a header.
			if st.Entries != 10 {
				t.Fatalf("%d entries wait, want 10", st.Entries)
			}
			noHeaderless(t, filepath.Join(cfg.Dir, lanesDir, "t", "p0"))

			disk.full.Store(false)
			for i := range 20 {
				m := msg(200 + i)
				m.Payload = append(m.Payload, big...)
				want = append(want, string(m.Payload))
				publish(t, s, "t", m)
			}
			st = s.Stats()
			if st.WriteFailing || st.LastWriteError == "" {
				t.Fatalf("after space returned: failing %v, last %q", st.WriteFailing, st.LastWriteError)
			}
			if n := logs.count("writes recovered"); n != 1 || !strings.Contains(logs.String(), fmt.Sprintf("errors=%d", st.WriteErrors)) {
				t.Fatalf("%d 'writes recovered' lines, want 1 with errors=%d:\n%s", n, st.WriteErrors, logs.String())
			}
			got := payloads(receive(t, subscribe(t, s, "t"), len(want), 5*time.Second))
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("served %d messages, want %d in order", len(got), len(want))
			}
			waitFor(t, func() bool { return s.Stats().Entries == 0 })
		})
	}
}

// noHeaderless fails if a lane directory holds a segment shorter than its
// file header.
func noHeaderless(t *testing.T, dir string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil && fi.Size() < fileHeaderLen {
			t.Fatalf("%s is %d bytes: a segment without its header was left behind", n, fi.Size())
		}
	}
}

// TestCreateFailureLeavesNoSegment: a segment whose header cannot be
// written is removed at once.
func TestCreateFailureLeavesNoSegment(t *testing.T) {
	cfg := testConfig(t, false)
	disk := &diskFull{only: opCreate}
	cfg.hooks = &hooks{write: disk.hook}
	s := open(t, cfg)
	disk.full.Store(true)
	if err := s.Publish("t", msg(1)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("publish: %v, want ENOSPC", err)
	}
	dir := filepath.Join(cfg.Dir, lanesDir, "t", "p0")
	if names, _ := filepath.Glob(filepath.Join(dir, "*"+segExt)); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
	disk.full.Store(false)
	publish(t, s, "t", msg(2))
	if got := payloads(receive(t, subscribe(t, s, "t"), 1, 5*time.Second)); got[0] != "m000002" {
		t.Fatalf("got %v", got)
	}
}

// TestOpenOnFullDisk: a lane whose last segment has no header (created on a
// full disk before a crash) opens on a disk that is still full, without
// writing anything: the empty segment is removed, what the lane holds is
// served, and appends go on with the next seq once space returns.
func TestOpenOnFullDisk(t *testing.T) {
	for _, size := range []int{0, 7} {
		t.Run(fmt.Sprintf("%d-bytes", size), func(t *testing.T) {
			cfg := testConfig(t, false)
			s := open(t, cfg)
			for i := range 50 {
				m := msg(i)
				m.Payload = append(m.Payload, strings.Repeat("c", 3000)...)
				publish(t, s, "t", m)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(cfg.Dir, lanesDir, "t", "p0")
			empty := filepath.Join(dir, segName(51)) // the seq after the last entry
			if err := os.WriteFile(empty, make([]byte, size), 0o600); err != nil {
				t.Fatal(err)
			}

			disk := &diskFull{}
			disk.full.Store(true)
			cfg.hooks = &hooks{write: disk.hook}
			s, err := Open(cfg, nil)
			if err != nil {
				t.Fatalf("open on a full disk: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			if n := disk.calls.Load(); n != 0 {
				t.Fatalf("open wrote %d times", n)
			}
			if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the empty segment is still there: %v", err)
			}
			recs := s.Recovered()
			if len(recs) != 1 || recs[0].Kind != DamageEmptySegment || recs[0].Entries != 0 || recs[0].Bytes != int64(size) {
				t.Fatalf("recovered %+v", recs)
			}
			if d := s.Stats().Dropped[reasonCorrupt]; d != 0 {
				t.Fatalf("%d records counted lost for an empty segment", d)
			}
			ch := subscribe(t, s, "t")
			receive(t, ch, 50, 5*time.Second)
			disk.full.Store(false)
			publish(t, s, "t", msg(99))
			if got := payloads(receive(t, ch, 1, 5*time.Second)); got[0] != "m000099" {
				t.Fatalf("got %v", got)
			}
			if _, err := os.Stat(empty); err != nil {
				t.Fatalf("the next append did not start segment 51: %v", err)
			}
		})
	}
}
