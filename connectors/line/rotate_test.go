package line

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/connectors"
)

// rotator rotates a tailed file the way logrotate does: by its own system
// calls (copy then truncate; rename then create, numbered copies shifted
// first), or by running Debian's logrotate when it is installed.
type rotator interface {
	rotate(t *testing.T)
}

// syscallRotator does what logrotate does for `copytruncate` (or, with
// rename, the default `create`) and `rotate 1000`: shift NAME.k to
// NAME.k+1 from the highest down, then copy NAME to NAME.1 and truncate
// NAME, or rename NAME to NAME.1 and create an empty NAME.
type syscallRotator struct {
	path   string
	rename bool
	n      int // rotations so far: the highest numbered copy
}

func (r *syscallRotator) rotate(t *testing.T) {
	t.Helper()
	for k := r.n; k >= 1; k-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", r.path, k), fmt.Sprintf("%s.%d", r.path, k+1)); err != nil {
			t.Fatal(err)
		}
	}
	r.n++
	if r.rename {
		if err := os.Rename(r.path, r.path+".1"); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(r.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		return
	}
	// logrotate's copytruncate: open, copy through a buffer into a new
	// file, then ftruncate the original to 0.
	src, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(r.path+".1", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Truncate(0); err != nil {
		t.Fatal(err)
	}
}

// logrotate runs /usr/sbin/logrotate -f on a config for path.
type logrotate struct {
	bin, conf, state string
}

func newLogrotate(t *testing.T, path, mode string) *logrotate {
	t.Helper()
	bin, err := exec.LookPath("logrotate")
	if err != nil {
		for _, p := range []string{"/usr/sbin/logrotate", "/sbin/logrotate"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Skip("logrotate is not installed (apt-get install logrotate); the syscall variants cover the same sequences")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "logrotate.conf")
	text := fmt.Sprintf("%s {\n  %s\n  rotate 1000\n  missingok\n  nocompress\n}\n", path, mode)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return &logrotate{bin: bin, conf: conf, state: filepath.Join(dir, "state")}
}

func (l *logrotate) rotate(t *testing.T) {
	t.Helper()
	out, err := exec.Command(l.bin, "-f", "-s", l.state, l.conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v: %s", err, out)
	}
}

// rotateBursts writes a burst of per lines, rotates, and again, rounds
// times without waiting for the tail, then a last burst; every line must
// arrive once. With restartAt > 0 the source is stopped after that many
// rounds and started again after three more, so rotations happen while it
// is down too.
func rotateBursts(t *testing.T, r rotator, path, cfg string, rounds, per, restartAt int) {
	t.Helper()
	data := t.TempDir()
	col := newCollector()
	appendTo(t, path, "")
	run := start(t, mustDecode(t, cfg), "rot", data, col)
	waitPhase(t, run.env, connectors.PhaseUp) // what is rotated away before the first open is before the start
	n := 0
	for i := range rounds {
		if restartAt > 0 && i == restartAt {
			run.stop(t)
		}
		if restartAt > 0 && i == restartAt+3 {
			run = start(t, mustDecode(t, cfg), "rot", data, col)
		}
		appendTo(t, path, seqLines(n+1, n+per))
		n += per
		r.rotate(t)
	}
	appendTo(t, path, seqLines(n+1, n+per))
	n += per
	waitQuiet(col, n, 30*time.Second)
	run.stop(t)
	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), n)
	if lost := testutil.ToFloat64(run.l.lostBytes); lost != 0 {
		t.Errorf("%v bytes counted lost; none was written between a copy and its truncate", lost)
	}
}

// Below and above the 1 KiB the head checksum covers: 5 lines (about
// 40 bytes) or 300 (about 2.5 KiB) per burst.
var burstSizes = []struct {
	name string
	per  int
}{{"small", 5}, {"large", 300}}

// TestTailRapidCopytruncate is issue 20's case: 50 copytruncate rotations
// in a row with a burst before each, faster than the tail polls (20ms), so
// a rotation lands while a burst is being read, or several before the next
// poll. Nothing is lost or repeated, at either size.
func TestTailRapidCopytruncate(t *testing.T) {
	for _, s := range burstSizes {
		for _, poll := range []string{"1ms", "20ms"} {
			t.Run(s.name+"/poll="+poll, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "machine.log")
				cfg := strings.Replace(fileConfig(path, ""), "poll_interval: 5ms", "poll_interval: "+poll, 1)
				rotateBursts(t, &syscallRotator{path: path}, path, cfg, 50, s.per, 0)
			})
		}
	}
}

// TestTailRapidRename: the same with rename-and-create rotations, several
// of which can happen within rotate_wait.
func TestTailRapidRename(t *testing.T) {
	for _, s := range burstSizes {
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "machine.log")
			rotateBursts(t, &syscallRotator{path: path, rename: true}, path, fileConfig(path, ""), 50, s.per, 0)
		})
	}
}

// TestTailRotationsWhileStopped: rotations of both kinds, some while the
// source is stopped.
func TestTailRotationsWhileStopped(t *testing.T) {
	for _, rename := range []bool{false, true} {
		t.Run(fmt.Sprintf("rename=%v", rename), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "machine.log")
			rotateBursts(t, &syscallRotator{path: path, rename: rename}, path, fileConfig(path, ""), 20, 30, 8)
		})
	}
}

// TestTailLogrotate runs Debian's logrotate itself, copytruncate and
// create, 50 times each with bursts in between.
func TestTailLogrotate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs logrotate 200 times")
	}
	for _, mode := range []string{"copytruncate", "create"} {
		for _, s := range burstSizes {
			t.Run(mode+"/"+s.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "machine.log")
				appendTo(t, path, "")
				rotateBursts(t, newLogrotate(t, path, mode), path, fileConfig(path, ""), 50, s.per, 0)
			})
		}
	}
}

// TestTailCopytruncateDated: with dateext the copy is machine-DATE.log;
// the lines written before the copy and not read yet (a long poll) are
// read from it.
func TestTailCopytruncateDated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "machine.log")
	cfg := strings.Replace(fileConfig(path, ""), "poll_interval: 5ms", "poll_interval: 10ms", 1)
	col := newCollector()
	appendTo(t, path, seqLines(1, 40))
	r := start(t, mustDecode(t, cfg), "dated", t.TempDir(), col)
	col.wait(t, 40, 10*time.Second)
	n := 40
	for day := 1; day <= 5; day++ {
		appendTo(t, path, seqLines(n+1, n+100)) // not read yet, most likely
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("machine-2026120%d.log", day)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		appendTo(t, path, seqLines(n+101, n+120))
		n += 120
		col.wait(t, n, 10*time.Second)
	}
	r.stop(t)
	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), n)
}

// TestTailTruncationWithoutCopy: a file truncated with no copy next to it
// (deleted, or compressed at once) is read again from its start, and only
// the new lines come.
func TestTailTruncationWithoutCopy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "machine.log")
	col := newCollector()
	appendTo(t, path, seqLines(1, 10))
	r := start(t, mustDecode(t, fileConfig(path, "")), "nocopy", t.TempDir(), col)
	col.wait(t, 10, 10*time.Second)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, seqLines(11, 30))
	col.wait(t, 30, 10*time.Second)
	r.stop(t)
	recs, _ := col.snapshot()
	exactlyOnce(t, values(t, recs), 30)
}

func testLogger() *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// waitQuiet waits until n records arrived or within passed, without
// failing: the exactly-once check that follows says what is missing.
func waitQuiet(c *collector, n int, within time.Duration) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if recs, _ := c.snapshot(); len(recs) >= n {
			return
		}
		select {
		case <-c.more:
		case <-deadline.C:
			return
		}
	}
}
