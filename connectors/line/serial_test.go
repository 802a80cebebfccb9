package line

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
)

// openPTY returns the master side of a new pseudo-terminal and the path of
// its slave, which the connector opens as its serial port. The slave is put
// in raw mode (no echo, no line editing) before the connector opens it, and
// a second handle on it stays open so the master never sees a hang-up
// between the suite's connector instances. Skips where there are no ptys.
func openPTY(t testing.TB) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		var unlock int32
		if _, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
			return
		}
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		_ = m.Close()
		t.Skipf("pty ioctl: %v %v", err, errno)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	keep, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		_ = m.Close()
		t.Skipf("pty slave: %v", err)
	}
	var tio syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, keep.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); errno == 0 {
		tio.Lflag &^= syscall.ECHO | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
		tio.Iflag &^= syscall.ICRNL | syscall.IXON
		_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, keep.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&tio)))
	}
	t.Cleanup(func() {
		_ = m.Close()
		_ = keep.Close()
	})
	return m, path
}

// TestSerialConformance runs the suite over a pty pair: the connector opens
// the slave with goburrow/serial as it would /dev/ttyUSB0, the test writes
// the device's lines into the master.
func TestSerialConformance(t *testing.T) {
	var garbage atomic.Int32
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			master, slave := openPTY(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Registered after openPTY's: runs first, so the writer has
			// stopped before the master closes.
			t.Cleanup(func() { close(stop); _ = master.Close(); wg.Wait() })
			wg.Go(func() { feedWriter(master, stop, &garbage) })
			return mustDecode(t, "type: line\nserial: {device: "+slave+", baud: 115200}\nmax_backoff: 100ms\n"+streamParse)
		},
		// No FailStart: a missing port is a source that is down and
		// retrying (TestSerialMissingPort), not a failed start.
		Malformed: func(*testing.T) { garbage.Add(1) },
	})
}

// TestSerialMissingPort: a port that cannot be opened is down with the
// reason, and the connector keeps retrying.
func TestSerialMissingPort(t *testing.T) {
	l := mustDecode(t, "type: line\nserial: {device: /dev/nonexistent-tty}\nmax_backoff: 50ms\n"+streamParse)
	r := start(t, l, "ser", t.TempDir(), newCollector())
	waitPhase(t, r.env, connectors.PhaseDown)
	if e := r.env.State().Snapshot().LastError; e == "" {
		t.Error("no last error")
	}
}
