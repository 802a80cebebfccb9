package cloud

import (
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
)

// Span is a closed range of sequence numbers.
type Span struct {
	From, To uint64
}

// SourceReport is what arrived from one source.
type SourceReport struct {
	Unique     uint64 `json:"unique"`
	Duplicates uint64 `json:"duplicates"`
	// OutOfOrder counts records whose seq was below the highest seen
	// before them from the same source (lanes and redelivery cause it).
	OutOfOrder uint64 `json:"out_of_order"`
	First      uint64 `json:"first"`
	Last       uint64 `json:"last"`
	// Gaps are the holes between First and Last that no record announced:
	// loss. CrashGaps are the part of the hole just below the first record
	// after a crash (ferry.seq_gap=crash) that lies in the range it
	// announced: numbers the crashed process reserved and never used, or
	// used and lost with it. EpochGaps are holes just below a record that
	// announced a new epoch (ferry.seq_gap=epoch): its seq store was
	// rebuilt. See classify.
	Gaps      []Span `json:"gaps,omitempty"`
	CrashGaps []Span `json:"crash_gaps,omitempty"`
	EpochGaps []Span `json:"epoch_gaps,omitempty"`
	// LatencyP50 and LatencyP99 are of arrival minus source time, over the
	// most recent 100,000 Avro records (JSON payloads carry no latency).
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP99 time.Duration `json:"latency_p99"`
}

// Report is what the cloud has received.
type Report struct {
	Batches    uint64                  `json:"batches"`
	Records    uint64                  `json:"records"` // every record, duplicates included
	Unique     uint64                  `json:"unique"`
	Duplicates uint64                  `json:"duplicates"`
	Malformed  uint64                  `json:"malformed"` // payloads that did not decode
	Sources    map[string]SourceReport `json:"sources"`
}

// Missing is the number of sequence numbers in gaps no record announced
// (loss), over all sources.
func (r Report) Missing() uint64 {
	var n uint64
	for _, s := range r.Sources {
		n += spanned(s.Gaps)
	}
	return n
}

// CrashSkipped is the number of sequence numbers in announced crash gaps,
// over all sources.
func (r Report) CrashSkipped() uint64 {
	var n uint64
	for _, s := range r.Sources {
		n += spanned(s.CrashGaps)
	}
	return n
}

func spanned(spans []Span) uint64 {
	var n uint64
	for _, g := range spans {
		n += g.To - g.From + 1
	}
	return n
}

// announcement is a gap a record announced (connectors.AttrSeqGap and
// its companions, documented in bus/schema/batch.v1.avsc): [From, To) for a
// crash; for an epoch, the hole that ends just below To.
type announcement = connectors.SeqGap

// parseAnnouncement reads a record's gap attributes; ok is false when it
// announces nothing, or nothing this checker can place.
func parseAnnouncement(attrs map[string]string, seq uint64) (a announcement, ok bool) {
	a.Kind = attrs[connectors.AttrSeqGap]
	if a.Kind != connectors.SeqGapCrash && a.Kind != connectors.SeqGapEpoch {
		return a, false
	}
	a.To = seq
	if v, err := strconv.ParseUint(attrs[connectors.AttrSeqGapTo], 10, 64); err == nil {
		a.To = v
	}
	if a.Kind == connectors.SeqGapCrash {
		v, err := strconv.ParseUint(attrs[connectors.AttrSeqGapFrom], 10, 64)
		if err != nil || v > a.To {
			return a, false
		}
		a.From = v
	}
	return a, true
}

// tracker keeps, per source, the received sequence numbers as sorted
// disjoint spans: arrivals are mostly in order, so a backlog of millions
// costs a handful of spans, not a set entry per record.
type tracker struct {
	mu        sync.Mutex
	sources   map[string]*sourceState
	batches   uint64
	records   uint64
	malformed uint64
	notify    chan struct{}
}

type sourceState struct {
	latencies  []time.Duration // a bounded sample, for percentiles
	spans      []Span
	unique     uint64
	dups       uint64
	outOfOrder uint64
	maxSeen    uint64
	any        bool
	announced  []announcement // distinct; a redelivered record adds none
}

func newTracker() *tracker {
	return &tracker{sources: map[string]*sourceState{}, notify: make(chan struct{})}
}

func (t *tracker) add(source string, seq uint64) {
	s := t.sources[source]
	if s == nil {
		s = &sourceState{}
		t.sources[source] = s
	}
	t.records++
	if s.any && seq < s.maxSeen {
		s.outOfOrder++
	}
	if !s.any || seq > s.maxSeen {
		s.maxSeen, s.any = seq, true
	}
	// Find the first span that ends at or after seq-1.
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].To+1 >= seq })
	if i < len(s.spans) && s.spans[i].From <= seq && seq <= s.spans[i].To {
		s.dups++
		return
	}
	s.unique++
	switch {
	case i < len(s.spans) && s.spans[i].To+1 == seq:
		s.spans[i].To = seq
		if i+1 < len(s.spans) && s.spans[i+1].From == seq+1 {
			s.spans[i].To = s.spans[i+1].To
			s.spans = append(s.spans[:i+1], s.spans[i+2:]...)
		}
	case i < len(s.spans) && s.spans[i].From == seq+1:
		s.spans[i].From = seq
	default:
		s.spans = append(s.spans, Span{})
		copy(s.spans[i+1:], s.spans[i:])
		s.spans[i] = Span{seq, seq}
	}
}

// announce keeps a gap a record announced, and reports whether it is new.
func (t *tracker) announce(source string, a announcement) bool {
	s := t.sources[source]
	if s == nil || slices.Contains(s.announced, a) {
		return false
	}
	s.announced = append(s.announced, a)
	return true
}

// classify sorts a hole between received spans. Only the hole just below
// an announcing record can be the gap it announces: a crash skips the
// unused end of its last reservation, and an epoch jumps from wherever the
// old numbering stopped. Of that hole, the part inside a crash's announced
// range is the crash gap and the part below it is loss; every other hole
// is loss, even one inside an announced range.
func (s *sourceState) classify(hole Span, sr *SourceReport) {
	for _, a := range s.announced {
		if a.To != hole.To+1 {
			continue
		}
		if a.Kind == connectors.SeqGapEpoch {
			sr.EpochGaps = append(sr.EpochGaps, hole)
			return
		}
		if a.From > hole.To {
			continue
		}
		sr.CrashGaps = append(sr.CrashGaps, Span{max(hole.From, a.From), hole.To})
		if hole.From < a.From {
			sr.Gaps = append(sr.Gaps, Span{hole.From, a.From - 1})
		}
		return
	}
	sr.Gaps = append(sr.Gaps, hole)
}

// done wakes waiters after a payload was counted.
func (t *tracker) done() {
	close(t.notify)
	t.notify = make(chan struct{})
}

// latency samples one record's delay; the sample keeps the most recent
// 100,000 per source.
func (t *tracker) latency(source string, d time.Duration) {
	s := t.sources[source]
	if s == nil {
		return
	}
	if len(s.latencies) < 100_000 {
		s.latencies = append(s.latencies, d)
		return
	}
	s.latencies[int(s.unique+s.dups)%len(s.latencies)] = d
}

func (t *tracker) report() Report {
	r := Report{Batches: t.batches, Records: t.records, Malformed: t.malformed, Sources: map[string]SourceReport{}}

	for name, s := range t.sources {
		sr := SourceReport{Unique: s.unique, Duplicates: s.dups, OutOfOrder: s.outOfOrder}
		if n := len(s.latencies); n > 0 {
			l := slices.Clone(s.latencies)
			slices.Sort(l)
			sr.LatencyP50, sr.LatencyP99 = l[n/2], l[min(n-1, n*99/100)]
		}
		if len(s.spans) > 0 {
			sr.First, sr.Last = s.spans[0].From, s.spans[len(s.spans)-1].To
		}
		for i := 1; i < len(s.spans); i++ {
			s.classify(Span{s.spans[i-1].To + 1, s.spans[i].From - 1}, &sr)
		}
		r.Unique += s.unique
		r.Duplicates += s.dups
		r.Sources[name] = sr
	}
	return r
}
