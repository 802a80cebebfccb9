package line

import (
	"os"

	"golang.org/x/sys/unix"
)

// bornBefore reports whether f was created before the file at name, when
// the file system records creation times (statx); false when it does not.
func bornBefore(f *os.File, name string) bool {
	var a, b unix.Statx_t
	if unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &a) != nil ||
		unix.Statx(unix.AT_FDCWD, name, 0, unix.STATX_BTIME, &b) != nil ||
		a.Mask&unix.STATX_BTIME == 0 || b.Mask&unix.STATX_BTIME == 0 {
		return false
	}
	return a.Btime.Sec < b.Btime.Sec || a.Btime.Sec == b.Btime.Sec && a.Btime.Nsec < b.Btime.Nsec
}
