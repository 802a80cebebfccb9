package spool

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Stats describes what waits in a spool: entries not yet acknowledged,
// including those delivered and in flight.
type Stats struct {
	Dir       string
	Encrypted bool
	Entries   int64 // bus messages (batches)
	Records   int64 // records they hold
	Bytes     int64 // entry bytes (headers and bodies)
	DiskBytes int64 // segment files, acknowledged parts of head segments included
	Oldest    time.Time
	Lanes     []LaneStats // by topic, then priority from highest
	// Dropped counts records dropped by reason (quota, ttl, corrupt) since
	// the spool was opened; empty from Inspect.
	Dropped map[string]int64
	// Recovered lists damage found on open (Inspect reports it without
	// repairing anything).
	Recovered []Recovery

	// Writes. WriteFailing is true from a failed write (a full disk) until
	// the same kind of write, or an append, succeeds again; meanwhile Publish returns
	// errors. WriteErrors counts failed writes since the spool was opened
	// (ferry_spool_write_errors_total); LastWriteError and LastWriteErrorAt
	// are the latest, kept after recovery.
	WriteFailing     bool
	WriteErrors      int64
	LastWriteError   string
	LastWriteErrorAt time.Time
}

// LaneStats is one lane of a topic.
type LaneStats struct {
	Topic     string
	Priority  int
	Entries   int64
	Records   int64
	Bytes     int64
	DiskBytes int64
	Segments  int
	InFlight  int
	Oldest    time.Time
}

// OldestAge is how long the oldest entry has waited at now; 0 when empty.
func (s Stats) OldestAge(now time.Time) time.Duration {
	if s.Oldest.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.Oldest))
}

// Stats returns the spool's current depth.
func (s *Spool) Stats() Stats {
	st := s.st.stats(s.st.now())
	s.st.mu.Lock()
	st.Dropped = make(map[string]int64, len(s.st.dropped))
	for k, v := range s.st.dropped {
		st.Dropped[k] = v
	}
	st.Recovered = append([]Recovery(nil), s.st.recovered...)
	s.st.mu.Unlock()
	w := &s.st.wh
	w.mu.Lock()
	st.WriteFailing, st.WriteErrors, st.LastWriteError, st.LastWriteErrorAt = w.failing, w.total, w.last, w.lastAt
	w.mu.Unlock()
	return st
}

// stats counts under store.mu; the headers it must read to learn the
// oldest entry's time are read after letting go of it.
func (st *store) stats(now time.Time) Stats {
	type peekAt struct {
		lane int
		seg  *segment
		off  int64
	}
	var peeks []peekAt
	st.mu.Lock()
	s := Stats{Dir: st.dir, Encrypted: st.sealer != nil}
	names := make([]string, 0, len(st.topics))
	for n := range st.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, l := range st.topics[n].lanes {
			c := l.live()
			ls := LaneStats{
				Topic: n, Priority: l.prio, Entries: c.entries, Records: c.records, Bytes: c.bytes,
				DiskBytes: l.diskBytes(), Segments: len(l.segs), InFlight: len(l.inflight),
			}
			if c.entries > 0 {
				t, seg, off := l.oldest()
				if t != 0 {
					ls.Oldest = time.Unix(0, t)
				} else if seg != nil {
					peeks = append(peeks, peekAt{len(s.Lanes), seg, off})
				}
			}
			s.Lanes = append(s.Lanes, ls)
			s.Entries += ls.Entries
			s.Records += ls.Records
			s.Bytes += ls.Bytes
			s.DiskBytes += ls.DiskBytes
		}
	}
	st.mu.Unlock()
	// A header read here may be stale by the time it returns (the entry
	// acknowledged, its segment released): the age is a reading, not a
	// promise, and a released segment reads as nothing.
	for _, p := range peeks {
		if h, ok := readHeaderAt(p.seg, p.off); ok && h.kind == kindMessage {
			s.Lanes[p.lane].Oldest = time.Unix(0, h.time)
		}
	}
	for _, ls := range s.Lanes {
		if !ls.Oldest.IsZero() && (s.Oldest.IsZero() || ls.Oldest.Before(s.Oldest)) {
			s.Oldest = ls.Oldest
		}
	}
	return s
}

// Inspect reports what waits in the spool in dir without opening it for
// writing: it takes no lock, repairs nothing and needs no key, so it can
// look at the spool of a running ferry (whose newest entries it may see
// half-written and report as a torn tail).
func Inspect(dir string) (Stats, error) {
	if _, err := os.Stat(filepath.Join(dir, lanesDir)); err != nil {
		return Stats{}, fmt.Errorf("spool: inspect %s: not a spool directory: %w", dir, err)
	}
	m, raw, damaged, err := readMeta(dir)
	if err != nil {
		return Stats{}, err
	}
	st := &store{
		dir: dir, topics: map[string]*topic{}, dropped: map[string]int64{},
		logger: slog.New(slog.DiscardHandler),
	}
	st.m = newMetrics(nil, "", st)
	if err := st.load(false); err != nil {
		st.closeLanes()
		return Stats{}, err
	}
	defer st.closeLanes()
	s := st.stats(st.now())
	s.Encrypted = m.KeyCheck != ""
	s.Recovered = st.recovered
	if damaged {
		_, s.Encrypted = sampleEncrypted(dir)
		s.Recovered = append([]Recovery{{Kind: DamageMeta, Segment: filepath.Join(dir, metaName), Bytes: int64(len(raw))}}, s.Recovered...)
	}
	return s, nil
}
