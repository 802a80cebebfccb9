// Package ptytest gives tests a pseudo-terminal pair to stand in for a serial
// line: the connector under test opens the slave as it would /dev/ttyUSB0,
// the test plays the device on the master. Linux only; it skips elsewhere.
package ptytest

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// Open returns the master side of a new pseudo-terminal and the path of
// its slave, which the connector opens as its serial port. The slave is put
// in raw mode (no echo, no line editing) before the connector opens it, and
// a second handle on it stays open so the master never sees a hang-up
// between the suite's connector instances. Skips where there are no ptys.
func Open(t testing.TB) (*os.File, string) {
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
