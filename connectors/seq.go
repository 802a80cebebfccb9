package connectors

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// seqBlock is how many sequence numbers one write of the high-water file
// reserves. Large, so the file is written rarely; numbers skipped after a
// crash are harmless, because consumers de-duplicate on (source, seq) and
// only need seq never to repeat.
const seqBlock = 1 << 20

// Sequencer hands out a source's sequence numbers. They increase across
// restarts: before a block is used, its end is written to the data
// directory, and the next process starts past it.
type Sequencer struct {
	mu       sync.Mutex
	next     uint64
	reserved uint64 // numbers below this are covered by the file
	path     string // empty: no data dir, in memory only
	err      error  // last persistence error, reported once
}

// OpenSequencer reads the high-water mark for module under dataDir. With no
// data dir the numbers start at the current Unix time in microseconds, which
// keeps them increasing across restarts as long as the source emits fewer
// than a million records per second on average.
func OpenSequencer(dataDir, module string) (*Sequencer, error) {
	if dataDir == "" {
		t := uint64(time.Now().UnixMicro())
		return &Sequencer{next: t, reserved: ^uint64(0)}, nil
	}
	dir := filepath.Join(dataDir, "seq")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sequence store: %w", err)
	}
	s := &Sequencer{path: filepath.Join(dir, module)}
	data, err := os.ReadFile(s.path)
	switch {
	case os.IsNotExist(err):
	case err != nil:
		return nil, fmt.Errorf("sequence store: %w", err)
	default:
		v, perr := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if perr != nil {
			return nil, fmt.Errorf("sequence store %s: corrupt high-water mark %q", s.path, data)
		}
		s.next = v
	}
	s.reserved = s.next
	if err := s.reserve(1); err != nil {
		return nil, err
	}
	return s, nil
}

// Reserve returns the first of n consecutive sequence numbers.
func (s *Sequencer) Reserve(n int) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.next
	s.next += uint64(n)
	var err error
	if s.next > s.reserved {
		err = s.reserve(int(s.next - s.reserved))
	}
	return first, err
}

func (s *Sequencer) reserve(n int) error {
	end := s.reserved + max(uint64(n), seqBlock)
	if s.path == "" {
		s.reserved = end
		return nil
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err == nil {
		_, err = f.WriteString(strconv.FormatUint(end, 10) + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	// Numbers keep increasing in this process even when the file cannot be
	// written; only the guarantee across a restart is weakened, and the
	// caller reports that.
	s.reserved = end
	if err != nil {
		return fmt.Errorf("sequence store %s: %w", s.path, err)
	}
	return nil
}
