package connectors

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// ErrSeqNotDurable is wrapped by the error of a reservation that could not
// be written to the sequence store. No number is handed out then: a number
// the store does not cover could be handed out again after a restart, and a
// consumer that de-duplicates on (source, seq) would silently discard it.
var ErrSeqNotDurable = errors.New("sequence numbers not durable")

// seqBlock is how many sequence numbers one write of the store reserves.
// Large, so the file is written rarely; a crash skips at most the unused
// rest of one block, and the first record after it announces that.
const seqBlock = 1 << 20

// The attributes that announce a gap in a source's seq on the first record
// after it (documented in bus/schema/batch.v1.avsc and the README).
const (
	AttrSeqGap     = "ferry.seq_gap"      // SeqGapCrash or SeqGapEpoch
	AttrSeqGapFrom = "ferry.seq_gap_from" // decimal; crash only: lowest number that may be skipped
	AttrSeqGapTo   = "ferry.seq_gap_to"   // decimal, exclusive: the seq of the announcing record
)

// Gap kinds.
const (
	// SeqGapCrash: the previous run did not shut down cleanly. Numbers in
	// [From, To) that never arrived were never emitted, or were emitted and
	// lost with the crashed process; none will be emitted later.
	SeqGapCrash = "crash"
	// SeqGapEpoch: the store was missing or damaged, so numbering restarted
	// at a new epoch above anything used before. The gap cannot be bounded.
	SeqGapEpoch = "epoch"
)

// SeqGap announces numbers that were skipped.
type SeqGap struct {
	Kind     string
	From, To uint64 // [From, To); From is 0 for an epoch
}

// stamp puts the announcement on r. The map is copied: callers share attr
// maps between records and reuse batches.
func (g *SeqGap) stamp(r *bus.Record) {
	a := maps.Clone(r.Attrs)
	if a == nil {
		a = make(map[string]string, 3)
	}
	a[AttrSeqGap] = g.Kind
	if g.Kind != SeqGapEpoch {
		a[AttrSeqGapFrom] = strconv.FormatUint(g.From, 10)
	}
	a[AttrSeqGapTo] = strconv.FormatUint(g.To, 10)
	r.Attrs = a
}

// SeqGapSource is a SeqSource that can announce a gap before the numbers it
// hands out: gap, when not nil, goes on the record numbered first.
type SeqGapSource interface {
	SeqSource
	ReserveGap(n int) (first uint64, gap *SeqGap, err error)
}

// SeqOpened is what OpenSequencer found, for the runtime to turn into an
// event.
type SeqOpened struct {
	Path string // empty without a data dir
	Next uint64 // the first number this process will hand out
	// Crash: the previous run did not close the store cleanly; its unused
	// reservation is skipped and announced.
	Crash bool
	// Rebuilt: the store was missing or damaged and a new epoch started at
	// Next; Cause says why.
	Rebuilt bool
	Cause   string
}

// Sequencer hands out a source's sequence numbers. They never repeat, in
// this process or after a restart: before a number is handed out it is
// covered by the store in the data directory, and a clean Close records the
// exact next number, so a clean restart continues without a gap.
type Sequencer struct {
	mu       sync.Mutex
	next     uint64
	reserved uint64  // numbers below this are covered by the store
	clean    bool    // the store says "clean, next" for the current next
	gap      *SeqGap // announced on the next numbers handed out
	path     string  // empty: no data dir, in memory only
	opened   SeqOpened
	// write stores data at path durably; tests inject failures here.
	write func(path string, data []byte) error
}

// One Sequencer per store file in a process: a module rebuilt by a reload
// while its old instance still runs shares the numbers instead of reserving
// the same ones from the file twice.
var seqStores = struct {
	sync.Mutex
	open  map[string]*Sequencer
	fresh map[string]bool // seq dirs this process created
}{open: map[string]*Sequencer{}, fresh: map[string]bool{}}

// OpenSequencer opens the sequence store of module under dataDir. It never
// fails: a store that cannot be read is rebuilt as a new epoch, and one that
// cannot be written makes Reserve fail until it can.
//
// With no data dir, and for a new epoch, numbers start at the current Unix
// time in microseconds. That stays above anything used before as long as the
// source emitted fewer than a million records per second on average since
// its numbering began. A data dir that has no seq directory yet is a first
// start, and numbers start at 0.
func OpenSequencer(dataDir, module string, logger *slog.Logger) (*Sequencer, SeqOpened) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if dataDir == "" {
		t := uint64(time.Now().UnixMicro())
		s := &Sequencer{next: t, reserved: ^uint64(0)}
		s.opened = SeqOpened{Next: t}
		return s, s.opened
	}
	dir := filepath.Join(dataDir, "seq")
	path := filepath.Join(dir, module)
	seqStores.Lock()
	defer seqStores.Unlock()
	if s := seqStores.open[path]; s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s, SeqOpened{Path: path, Next: s.next}
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		seqStores.fresh[dir] = true
		// A failure here is not fatal: the first reservation creates it
		// or fails, and emission waits until it succeeds.
		_ = os.MkdirAll(dir, 0o750)
	}
	s := &Sequencer{path: path, write: writeDurable}
	s.load(seqStores.fresh[dir], logger)
	s.reserved = s.next
	s.opened.Path, s.opened.Next = path, s.next
	seqStores.open[path] = s
	return s, s.opened
}

// load sets next, gap, clean and opened from the store file.
func (s *Sequencer) load(freshDir bool, logger *slog.Logger) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		if freshDir {
			return // first start: numbering begins at 0
		}
		s.newEpoch("missing", logger)
		return
	}
	if err != nil {
		s.newEpoch("unreadable: "+err.Error(), logger)
		return
	}
	f, perr := parseSeqFile(data)
	if perr != nil {
		s.newEpoch(perr.Error(), logger)
		return
	}
	switch {
	case f.clean:
		s.next, s.clean = f.next, true
		s.gap = f.gap // announced by a run that never emitted it
	default:
		s.next = f.reserved
		g := SeqGap{Kind: SeqGapCrash, From: f.next}
		if f.gap != nil {
			g = *f.gap // still not announced: widen it, do not lose it
		}
		s.gap = &g
		s.opened.Crash = true
		if f.legacy {
			logger.Info("sequence store in the old format: the restart is announced as a crash gap, since that format cannot say it was clean", "path", s.path, "next", s.next)
		} else {
			logger.Warn("previous run did not shut down cleanly: seq skips the unused rest of its reservation, announced on the first record", "path", s.path, "skipped_from", g.From, "next", s.next)
		}
	}
}

// newEpoch starts numbering above anything the lost store can have covered.
func (s *Sequencer) newEpoch(cause string, logger *slog.Logger) {
	next := uint64(time.Now().UnixMicro())
	// A reservation whose rename never happened still bounds what was used.
	if data, err := os.ReadFile(s.path + ".tmp"); err == nil {
		if f, err := parseSeqFile(data); err == nil {
			next = max(next, f.next, f.reserved)
		}
	}
	s.next = next
	s.gap = &SeqGap{Kind: SeqGapEpoch}
	s.opened.Rebuilt, s.opened.Cause = true, cause
	if cause == "missing" {
		// A module new to this data dir looks the same as a deleted file.
		logger.Info("sequence store has no file for this module: starting a new epoch", "path", s.path, "next", next)
		return
	}
	logger.Warn("sequence store damaged: starting a new epoch", "path", s.path, "cause", cause, "next", next)
}

// Opened returns what OpenSequencer found.
func (s *Sequencer) Opened() SeqOpened {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Reserve returns the first of n consecutive sequence numbers. A pending
// gap announcement is dropped; sources that can carry it use ReserveGap.
func (s *Sequencer) Reserve(n int) (uint64, error) {
	first, _, err := s.ReserveGap(n)
	return first, err
}

// ReserveGap returns the first of n consecutive sequence numbers, and the
// gap to announce on the record numbered first, if any. When the store
// cannot cover them it hands out nothing and returns an error wrapping
// ErrSeqNotDurable; a later call tries again.
func (s *Sequencer) ReserveGap(n int) (uint64, *SeqGap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		return s.next, nil, nil
	}
	need := s.next + uint64(n)
	if need > s.reserved {
		end := max(s.reserved+seqBlock, need)
		if err := s.store(seqFile{next: s.next, reserved: end, gap: s.gap}); err != nil {
			return 0, nil, err
		}
		s.reserved, s.clean = end, false
	}
	first := s.next
	s.next = need
	var gap *SeqGap
	if s.gap != nil {
		gap = &SeqGap{Kind: s.gap.Kind, From: s.gap.From, To: first}
		s.gap = nil
	}
	return first, gap, nil
}

// Close records the exact next number as a clean shutdown, so the next
// start continues without a gap. The Sequencer stays usable: a later
// Reserve writes a new reservation first. When the write fails the store
// still says "reserved", and the next start announces a crash gap.
func (s *Sequencer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" || s.clean {
		return nil
	}
	if err := s.store(seqFile{clean: true, next: s.next, gap: s.gap}); err != nil {
		return err
	}
	s.reserved, s.clean = s.next, true
	return nil
}

func (s *Sequencer) store(f seqFile) error {
	if err := s.write(s.path, f.encode()); err != nil {
		return fmt.Errorf("%w: sequence store %s: %w", ErrSeqNotDurable, s.path, err)
	}
	return nil
}

// writeDurable replaces path with data so that a crash or power loss leaves
// either the old or the new content: written and synced to a temporary
// file, renamed over, and the rename synced through the directory.
func writeDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// seqFile is the store's content. Version 2 is one line:
//
//	ferry-seq/2 clean next=N [gap=KIND[:FROM]] crc=XXXXXXXX
//	ferry-seq/2 open next=N reserved=R [gap=KIND[:FROM]] crc=XXXXXXXX
//
// "clean": a clean shutdown, N is exactly the next number. "open": numbers
// below R may have been handed out; N was next when R was written. gap is
// an announcement not yet carried by a record. crc is the CRC-32 (IEEE) of
// everything before " crc=", so a zeroed or torn file is told from a
// valid one. Version 1 is a bare decimal number: the end of a reservation.
type seqFile struct {
	clean          bool
	next, reserved uint64
	gap            *SeqGap
	legacy         bool
}

const seqMagic = "ferry-seq/2"

func (f seqFile) encode() []byte {
	var b strings.Builder
	b.WriteString(seqMagic)
	if f.clean {
		fmt.Fprintf(&b, " clean next=%d", f.next)
	} else {
		fmt.Fprintf(&b, " open next=%d reserved=%d", f.next, f.reserved)
	}
	if f.gap != nil {
		fmt.Fprintf(&b, " gap=%s", f.gap.Kind)
		if f.gap.Kind != SeqGapEpoch {
			fmt.Fprintf(&b, ":%d", f.gap.From)
		}
	}
	body := b.String()
	return fmt.Appendf(nil, "%s crc=%08x\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func parseSeqFile(data []byte) (seqFile, error) {
	text := strings.TrimRight(string(data), "\n")
	if v, err := strconv.ParseUint(strings.TrimSpace(text), 10, 64); err == nil {
		return seqFile{next: v - min(v, seqBlock), reserved: v, legacy: true}, nil
	}
	bad := func(why string) (seqFile, error) {
		q := text
		if len(q) > 64 {
			q = q[:64] + "…"
		}
		return seqFile{}, fmt.Errorf("%s in %q", why, q)
	}
	body, sum, ok := strings.Cut(text, " crc=")
	if !ok || !strings.HasPrefix(body, seqMagic+" ") {
		return bad("not a sequence store")
	}
	if c, err := strconv.ParseUint(sum, 16, 32); err != nil || uint32(c) != crc32.ChecksumIEEE([]byte(body)) {
		return bad("checksum mismatch")
	}
	fields := strings.Fields(body)[1:]
	if len(fields) == 0 {
		return bad("incomplete")
	}
	var f seqFile
	var haveNext, haveReserved bool
	switch fields[0] {
	case "clean":
		f.clean = true
	case "open":
	default:
		return bad("unknown state")
	}
	for _, kv := range fields[1:] {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "next":
			f.next, err = strconv.ParseUint(v, 10, 64)
			haveNext = true
		case "reserved":
			f.reserved, err = strconv.ParseUint(v, 10, 64)
			haveReserved = true
		case "gap":
			kind, from, hasFrom := strings.Cut(v, ":")
			g := SeqGap{Kind: kind}
			if kind != SeqGapCrash && kind != SeqGapEpoch {
				return bad("unknown gap kind")
			}
			if hasFrom {
				g.From, err = strconv.ParseUint(from, 10, 64)
			}
			f.gap = &g
		}
		if err != nil {
			return bad("bad " + k)
		}
	}
	if !haveNext || !f.clean && (!haveReserved || f.reserved < f.next) {
		return bad("incomplete")
	}
	return f, nil
}

// SeqOpened reports what the sequence store found when it was opened, for
// the runtime to turn a crash or a rebuild into an event; ok is false when
// the Env's numbers come from elsewhere (a lease) or it emits nothing. An
// Env rebuilt in the same process (a reload) shares the store and reports
// the same, so report it once per process start.
func (e *Env) SeqOpened() (opened SeqOpened, ok bool) {
	s, ok := e.seq.(*Sequencer)
	if !ok {
		return SeqOpened{}, false
	}
	return s.Opened(), true
}

// closeSeq records a clean shutdown in the sequence store. Numbers asked
// for afterwards (a goroutine that outlived Shutdown) need a new
// reservation first, so none is handed out twice.
func (e *Env) closeSeq() {
	s, ok := e.seq.(*Sequencer)
	if !ok {
		return
	}
	if err := s.Close(); err != nil {
		e.Logger.Warn("clean shutdown not recorded: the next start announces a crash gap in seq", "error", err)
	}
}

var _ SeqGapSource = (*Sequencer)(nil)
