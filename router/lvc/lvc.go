// Package lvc is the last-value cache: for every (source, device, tag) the
// engine has seen, the latest record, how often it updates, and a few of its
// recent values, for the status page's tags view and GET /api/tags.
//
// Memory is bounded twice: by the number of tags (Max; records of further
// tags are counted, not kept) and per tag, a fixed-size entry with no
// per-record allocation: an update overwrites the entry in place, and the
// strings it keeps are those of the record (the decoder's interned names),
// never copies. At 100,000 tags it holds about 360 bytes a tag (see
// BenchmarkBytesPerTag and BENCHMARKS.md).
package lvc

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// DefaultMax is how many tags a cache keeps unless told otherwise: about
// 36 MB at the measured size per tag.
const DefaultMax = 100_000

// HistoryLen is how many recent values a tag keeps for the page's chart.
// float32 is enough to draw them and halves what a tag costs.
const HistoryLen = 16

// StaleAfter is how many of its device's usual intervals between records a
// device may stay silent before its tags are marked stale; minStale keeps a
// device that reports many times a second from flickering.
const (
	StaleAfter = 3
	minStale   = 2 * time.Second
)

// Key names a tag.
type Key struct {
	Source, Device, Tag string
}

type entry struct {
	key     Key
	val     bus.Value
	unit    string
	seq     uint64
	ts      int64 // the record's source time
	ingest  int64
	seen    int64 // when the cache took it, on the gateway's clock
	first   int64
	updates uint64
	status  uint32
	dev     int32 // index into devices
	q       bus.Quality
	hn      uint8 // next slot of hist
	hlen    uint8
	hist    [HistoryLen]float32
}

type devKey struct{ Source, Device string }

// device is what staleness is judged on: with report-by-exception, a tag
// that does not change is silent while its device is not.
type device struct {
	key  devKey
	last int64   // when its latest record came
	gap  float64 // moving average of the time between its batches, ns
}

// Cache is safe for one writer (the engine) and any number of readers.
type Cache struct {
	mu      sync.RWMutex
	max     int
	index   map[Key]int32
	entries []entry
	devIdx  map[devKey]int32
	devices []device
	order   []int32 // entries sorted by key; nil when a tag was added since
	// hints remember, per source and device, which entry each position of its last
	// batch was: a poll produces its tags in the same order every time, so
	// comparing the names (the same strings, equal at the pointer) mostly
	// saves hashing them.
	hints map[devKey][]int32
	over  uint64 // records of tags beyond max
	now   func() int64
}

// New returns a cache of at most max tags (DefaultMax when max <= 0).
func New(max int) *Cache {
	if max <= 0 {
		max = DefaultMax
	}
	return &Cache{max: max, index: map[Key]int32{}, devIdx: map[devKey]int32{}, hints: map[devKey][]int32{}, now: func() int64 { return time.Now().UnixNano() }}
}

// Update takes the records of one batch. It locks once per batch, and
// allocates only for a tag it has not seen before.
func (c *Cache) Update(b *bus.Batch) {
	if len(b.Records) == 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	lastDev := int32(-1)
	src := devKey{b.Records[0].Source, b.Records[0].Device}
	hint := c.hints[src]
	if len(hint) < len(b.Records) {
		hint = append(hint, make([]int32, len(b.Records)-len(hint))...)
		for i := range hint {
			hint[i] = -1
		}
		c.hints[src] = hint
	}
	for i := range b.Records {
		r := &b.Records[i]
		k := Key{r.Source, r.Device, r.Tag}
		idx := hint[i]
		if idx < 0 || int(idx) >= len(c.entries) || c.entries[idx].key != k {
			var ok bool
			idx, ok = c.index[k]
			if !ok {
				if len(c.entries) >= c.max {
					c.over++
					continue
				}
				idx = c.add(r, now)
			}
			hint[i] = idx
		}
		e := &c.entries[idx]
		e.val, e.unit, e.seq, e.ts, e.ingest, e.status, e.q = r.Value, r.Unit, r.Seq, r.SourceTime, r.IngestTime, r.Status, r.Quality
		e.seen = now
		e.updates++
		if f, ok := r.Value.Float(); ok {
			e.hist[e.hn] = float32(f)
			e.hn = (e.hn + 1) % HistoryLen
			if e.hlen < HistoryLen {
				e.hlen++
			}
		}
		if e.dev != lastDev {
			lastDev = e.dev
			d := &c.devices[e.dev]
			if d.last != 0 && now > d.last {
				g := float64(now - d.last)
				if d.gap == 0 {
					d.gap = g
				} else {
					d.gap += (g - d.gap) / 8
				}
			}
			d.last = now
		}
	}
	c.mu.Unlock()
}

func (c *Cache) add(r *bus.Record, now int64) int32 {
	dk := devKey{r.Source, r.Device}
	di, ok := c.devIdx[dk]
	if !ok {
		di = int32(len(c.devices))
		c.devices = append(c.devices, device{key: dk})
		c.devIdx[dk] = di
	}
	idx := int32(len(c.entries))
	c.entries = append(c.entries, entry{key: Key{r.Source, r.Device, r.Tag}, dev: di, first: now})
	c.index[c.entries[idx].key] = idx
	c.order = nil
	return idx
}

// Forget drops every tag of a source (a module a reload removed).
func (c *Cache) Forget(source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.ContainsFunc(c.entries, func(e entry) bool { return e.key.Source == source }) {
		return
	}
	old := c.entries
	oldDev := c.devices
	c.entries, c.devices = nil, nil
	c.index, c.devIdx = map[Key]int32{}, map[devKey]int32{}
	c.order, c.hints = nil, map[devKey][]int32{}
	remap := map[int32]int32{}
	for _, e := range old {
		if e.key.Source == source {
			continue
		}
		di, ok := remap[e.dev]
		if !ok {
			di = int32(len(c.devices))
			c.devices = append(c.devices, oldDev[e.dev])
			c.devIdx[oldDev[e.dev].key] = di
			remap[e.dev] = di
		}
		e.dev = di
		c.index[e.key] = int32(len(c.entries))
		c.entries = append(c.entries, e)
	}
}

// Len is how many tags the cache holds.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Tag is one tag as GET /api/tags shows it.
type Tag struct {
	Source  string `json:"source"`
	Device  string `json:"device"`
	Tag     string `json:"tag"`
	Value   any    `json:"value"`
	Type    string `json:"type"`
	Quality string `json:"quality"`
	Status  uint32 `json:"status"`
	// TS is the device's time of the value, IngestTS when ferry read it.
	TS       time.Time `json:"ts,omitzero"`
	IngestTS time.Time `json:"ingest_ts,omitzero"`
	Seq      uint64    `json:"seq"`
	Unit     string    `json:"unit,omitempty"`
	Updates  uint64    `json:"updates"`
	// Rate is updates a second between the first and the latest.
	Rate       float64 `json:"rate"`
	AgeSeconds float64 `json:"age_seconds"`
	// Stale: its device has sent nothing for StaleAfter of its usual
	// intervals.
	Stale bool `json:"stale"`
	// History is the recent numeric values, oldest first (one tag only).
	History []float64 `json:"history,omitempty"`
}

func (c *Cache) view(e *entry, now int64, hist bool) Tag {
	t := Tag{
		Source: e.key.Source, Device: e.key.Device, Tag: e.key.Tag,
		Value: jsonValue(e.val), Type: e.val.Kind.String(), Quality: e.q.String(), Status: e.status,
		Seq: e.seq, Unit: e.unit, Updates: e.updates,
		AgeSeconds: float64(now-e.seen) / 1e9,
		Stale:      c.stale(e, now),
	}
	if e.ts != 0 {
		t.TS = time.Unix(0, e.ts).UTC()
	}
	if e.ingest != 0 {
		t.IngestTS = time.Unix(0, e.ingest).UTC()
	}
	if span := e.seen - e.first; span > 0 && e.updates > 1 {
		t.Rate = math.Round(float64(e.updates-1)/(float64(span)/1e9)*100) / 100
	}
	if hist {
		t.History = make([]float64, 0, e.hlen)
		start := (int(e.hn) - int(e.hlen) + HistoryLen) % HistoryLen
		for i := range int(e.hlen) {
			t.History = append(t.History, float64(e.hist[(start+i)%HistoryLen]))
		}
	}
	return t
}

func (c *Cache) stale(e *entry, now int64) bool {
	d := &c.devices[e.dev]
	limit := max(int64(StaleAfter*d.gap), int64(minStale))
	return now-d.last > limit
}

// jsonValue is what encoding/json can write: NaN and the infinities, which
// JSON has no numbers for, as strings; bytes as hex.
func jsonValue(v bus.Value) any {
	switch v.Kind {
	case bus.KindNull:
		return nil
	case bus.KindBool:
		return v.Bool()
	case bus.KindLong:
		return v.Long()
	case bus.KindDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return v.String()
		}
		return f
	}
	return v.String()
}

// Query selects tags. Empty fields match everything.
type Query struct {
	Source, Device string
	// Match, when set, is tested on "device/tag" and on the tag alone.
	Match   func(string) bool
	Quality string // GOOD, UNCERTAIN, BAD
	Stale   *bool
	Offset  int
	Limit   int // DefaultLimit when 0, at most MaxLimit
}

// Page limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of the tags that match, sorted by source, device, tag.
type Page struct {
	Total   int    `json:"total"`   // tags in the cache
	Matched int    `json:"matched"` // tags that match the query
	Offset  int    `json:"offset"`
	Limit   int    `json:"limit"`
	Tags    []Tag  `json:"tags"`
	Over    uint64 `json:"not_cached,omitempty"` // records of tags beyond the cache's bound
	Max     int    `json:"max_tags"`
}

// Query returns one page of the tags that match q.
func (c *Cache) Query(q Query) Page {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	q.Offset = max(q.Offset, 0)
	order := c.sorted()
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := c.now()
	p := Page{Total: len(c.entries), Offset: q.Offset, Limit: q.Limit, Tags: []Tag{}, Over: c.over, Max: c.max}
	for _, i := range order {
		if int(i) >= len(c.entries) {
			continue // forgotten since the order was made
		}
		e := &c.entries[i]
		if !c.matches(e, &q, now) {
			continue
		}
		if p.Matched >= q.Offset && len(p.Tags) < q.Limit {
			p.Tags = append(p.Tags, c.view(e, now, false))
		}
		p.Matched++
	}
	return p
}

func (c *Cache) matches(e *entry, q *Query, now int64) bool {
	switch {
	case q.Source != "" && e.key.Source != q.Source,
		q.Device != "" && e.key.Device != q.Device,
		q.Quality != "" && e.q.String() != q.Quality,
		q.Stale != nil && c.stale(e, now) != *q.Stale:
		return false
	case q.Match != nil:
		return q.Match(e.key.Device+"/"+e.key.Tag) || q.Match(e.key.Tag)
	}
	return true
}

// sorted returns the entries' indexes in key order, sorting again only
// after tags were added.
func (c *Cache) sorted() []int32 {
	c.mu.RLock()
	o := c.order
	c.mu.RUnlock()
	if o != nil {
		return o
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.order != nil {
		return c.order
	}
	o = make([]int32, len(c.entries))
	for i := range o {
		o[i] = int32(i)
	}
	slices.SortFunc(o, func(a, b int32) int {
		x, y := &c.entries[a].key, &c.entries[b].key
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Device, y.Device), cmp.Compare(x.Tag, y.Tag))
	})
	c.order = o
	return o
}

// Get returns one tag with its recent values.
func (c *Cache) Get(k Key) (Tag, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.index[k]
	if !ok {
		return Tag{}, false
	}
	return c.view(&c.entries[i], c.now(), true), true
}

// DeviceSummary is one device's tags in numbers.
type DeviceSummary struct {
	Source   string  `json:"source"`
	Device   string  `json:"device"`
	Tags     int     `json:"tags"`
	Bad      int     `json:"bad"`
	Stale    bool    `json:"stale"`
	Interval float64 `json:"interval_seconds"` // the usual time between its records
	// AgeSeconds is how long ago its latest record came.
	AgeSeconds float64 `json:"age_seconds"`
}

// Devices summarises every device, sorted by source and device.
func (c *Cache) Devices() []DeviceSummary {
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := c.now()
	out := make([]DeviceSummary, len(c.devices))
	for i, d := range c.devices {
		limit := max(int64(StaleAfter*d.gap), int64(minStale))
		out[i] = DeviceSummary{Source: d.key.Source, Device: d.key.Device, Stale: now-d.last > limit,
			Interval: math.Round(d.gap/1e6) / 1e3, AgeSeconds: float64(now-d.last) / 1e9}
	}
	for i := range c.entries {
		e := &c.entries[i]
		out[e.dev].Tags++
		if e.q == bus.Bad {
			out[e.dev].Bad++
		}
	}
	slices.SortFunc(out, func(a, b DeviceSummary) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Device, b.Device))
	})
	return out
}
