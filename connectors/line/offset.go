package line

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
)

// fileState is what a tailed file commits after each emitted batch: which
// file (device and inode, plus a checksum of its first bytes, so a reused
// inode or a truncated-and-rewritten file is told apart) and the offset
// after the last line taken.
type fileState struct {
	PathHash uint64 // of the configured path: a changed path starts over
	ID       fileID
	Off      int64  // offset after the last complete line emitted or skipped
	Size     int64  // the file's size when committed
	HeadLen  uint32 // bytes covered by Head: what was read of the first headMax
	Head     uint64 // checksum of the first HeadLen bytes
	// Gen is the numbered copy (NAME.N) read last, or the newest when the
	// file was first opened: copies newer than it hold lines not read yet.
	Gen    fileID
	HasGen bool
}

// fileID identifies a file across renames.
type fileID struct{ Dev, Ino uint64 }

// offsetStore keeps fileState in two fixed slots of one small file, written
// alternately with a generation number and a CRC: a commit is one pwrite and
// one fsync, and a write torn by a power loss leaves the other slot intact.
type offsetStore struct {
	f   *os.File
	gen uint64
}

const (
	offsetFile = "offset"
	slotSize   = 512 // one sector apart, so a torn write spoils one slot only
	slotLen1   = 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + 4 + 8
	slotLen    = slotLen1 + 8 + 8 + 4
	slotMagic1 = "FLT1" // before the copy generation was kept
	slotMagic  = "FLT2"
	headMax    = 1024
)

// openOffsets opens (or creates) the store in dir and returns the last
// committed state, if any.
func openOffsets(dir string) (*offsetStore, fileState, bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, offsetFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fileState{}, false, fmt.Errorf("offset store: %w", err)
	}
	s := &offsetStore{f: f}
	var best fileState
	found := false
	buf := make([]byte, slotLen)
	for slot := range 2 {
		if _, err := f.ReadAt(buf, int64(slot*slotSize)); err != nil {
			if errors.Is(err, io.EOF) {
				continue
			}
			_ = f.Close()
			return nil, fileState{}, false, fmt.Errorf("offset store: %w", err)
		}
		st, gen, ok := decodeSlot(buf)
		if ok && (!found || gen > s.gen) {
			best, s.gen, found = st, gen, true
		}
	}
	return s, best, found, nil
}

// save commits st durably.
func (s *offsetStore) save(st fileState) error {
	s.gen++
	buf := encodeSlot(st, s.gen)
	if _, err := s.f.WriteAt(buf, int64(s.gen%2)*slotSize); err != nil {
		return fmt.Errorf("offset store: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("offset store: fsync: %w", err)
	}
	return nil
}

func (s *offsetStore) close() error { return s.f.Close() }

func encodeSlot(st fileState, gen uint64) []byte {
	b := make([]byte, 8, slotLen)
	copy(b, slotMagic)
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint64(b, st.PathHash)
	b = binary.LittleEndian.AppendUint64(b, st.ID.Dev)
	b = binary.LittleEndian.AppendUint64(b, st.ID.Ino)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Off))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Size))
	b = binary.LittleEndian.AppendUint32(b, st.HeadLen)
	b = binary.LittleEndian.AppendUint64(b, st.Head)
	b = binary.LittleEndian.AppendUint64(b, st.Gen.Dev)
	b = binary.LittleEndian.AppendUint64(b, st.Gen.Ino)
	var flags uint32
	if st.HasGen {
		flags = 1
	}
	b = binary.LittleEndian.AppendUint32(b, flags)
	binary.LittleEndian.PutUint32(b[4:8], crc32.ChecksumIEEE(b[8:]))
	return b
}

func decodeSlot(b []byte) (fileState, uint64, bool) {
	n := slotLen
	if len(b) >= slotLen1 && string(b[:4]) == slotMagic1 {
		n = slotLen1
	} else if string(b[:4]) != slotMagic {
		return fileState{}, 0, false
	}
	if len(b) < n || binary.LittleEndian.Uint32(b[4:8]) != crc32.ChecksumIEEE(b[8:n]) {
		return fileState{}, 0, false
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }
	st := fileState{
		PathHash: u(16),
		ID:       fileID{Dev: u(24), Ino: u(32)},
		Off:      int64(u(40)),
		Size:     int64(u(48)),
		HeadLen:  binary.LittleEndian.Uint32(b[56:]),
		Head:     u(60),
	}
	if n == slotLen {
		st.Gen = fileID{Dev: u(68), Ino: u(76)}
		st.HasGen = binary.LittleEndian.Uint32(b[84:])&1 != 0
	}
	return st, u(8), true
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}
