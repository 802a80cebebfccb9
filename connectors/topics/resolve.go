package topics

import (
	"strings"

	"github.com/ferry-gateway/ferry/bus"
)

// Resolver renders a template's topics for one sink, once per distinct
// combination of the record fields the template uses: the default uplink
// topic ferry/{site}/{source} used to be rendered and looked up for every
// record (issue 14: 6% of a Modbus→MQTT job's CPU), though a whole batch
// maps to one topic. A Resolver is not safe for concurrent use.
type Resolver struct {
	t      Template
	site   string
	module string
	fixed  string // the topic, when the template is not per record
	uses   uses
	cache  map[key]string
	buf    []byte
	runs   []run
	spill  map[string]int // topic → index into the result, for the slow path
}

type uses struct{ source, device, tag bool }

// key holds only the fields the template uses; the others stay empty, so
// records differing in them share an entry.
type key struct{ source, device, tag string }

type run struct {
	topic      string
	start, end int
}

// Group is the records of a batch that go to one topic.
type Group struct {
	Topic   string
	Records []bus.Record
}

// maxCached bounds the cache; past it the cache starts over. Topics per tag
// of a large site (100,000 tags) fit.
const maxCached = 1 << 17

// NewResolver returns a resolver of t for a sink of site and module.
func NewResolver(t Template, site, module string) *Resolver {
	r := &Resolver{t: t, site: site, module: module}
	for _, p := range t.parts {
		switch p.ph {
		case "source":
			r.uses.source = true
		case "device":
			r.uses.device = true
		case "tag":
			r.uses.tag = true
		}
	}
	if !t.PerRecord {
		r.fixed = string(t.Render(nil, site, module, nil))
	}
	return r
}

// PerTag reports whether the template names the tag, so that each tag of a
// device has a topic of its own.
func (t Template) PerTag() bool {
	for _, p := range t.parts {
		if p.ph == "tag" {
			return true
		}
	}
	return false
}

func (r *Resolver) key(rec *bus.Record) key {
	var k key
	if r.uses.source {
		k.source = rec.Source
	}
	if r.uses.device {
		k.device = rec.Device
	}
	if r.uses.tag {
		k.tag = rec.Tag
	}
	return k
}

// Topic returns rec's topic.
func (r *Resolver) Topic(rec *bus.Record) string {
	if !r.t.PerRecord {
		return r.fixed
	}
	k := r.key(rec)
	if s, ok := r.cache[k]; ok {
		return s
	}
	r.buf = r.t.Render(r.buf[:0], r.site, r.module, rec)
	s := string(r.buf)
	if r.cache == nil || len(r.cache) >= maxCached {
		r.cache = make(map[key]string)
	}
	// The key's strings may point into a decoded payload; a copy keeps
	// the cache from holding that alive.
	r.cache[key{strings.Clone(k.source), strings.Clone(k.device), strings.Clone(k.tag)}] = s
	return s
}

// same reports whether a and b map to the same topic, without rendering.
func (r *Resolver) same(a, b *bus.Record) bool {
	return (!r.uses.source || a.Source == b.Source) &&
		(!r.uses.device || a.Device == b.Device) &&
		(!r.uses.tag || a.Tag == b.Tag)
}

// Group appends to dst the groups of recs by topic, in the order of their
// first record, keeping record order within a group. The groups' records
// are recs itself (or slices of it) whenever each topic's records are
// contiguous, as a batch that maps to one topic always is; only records of
// a topic spread between others are copied. dst and its records are valid
// until the next call.
func (r *Resolver) Group(dst []Group, recs []bus.Record) []Group {
	if len(recs) == 0 {
		return dst
	}
	if !r.t.PerRecord {
		return append(dst, Group{Topic: r.fixed, Records: recs})
	}
	r.runs = r.runs[:0]
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && r.same(&recs[i], &recs[j]) {
			j++
		}
		r.runs = append(r.runs, run{topic: r.Topic(&recs[i]), start: i, end: j})
		i = j
	}
	if len(r.runs) == 1 {
		return append(dst, Group{Topic: r.runs[0].topic, Records: recs})
	}
	// Several runs: slices of recs when no topic has two of them.
	if r.spill == nil {
		r.spill = make(map[string]int)
	}
	clear(r.spill)
	spread := false
	for _, ru := range r.runs {
		if _, ok := r.spill[ru.topic]; ok {
			spread = true
			break
		}
		r.spill[ru.topic] = 0
	}
	if !spread {
		for _, ru := range r.runs {
			dst = append(dst, Group{Topic: ru.topic, Records: recs[ru.start:ru.end]})
		}
		return dst
	}
	clear(r.spill)
	for _, ru := range r.runs {
		i, ok := r.spill[ru.topic]
		if !ok {
			i = len(dst)
			r.spill[ru.topic] = i
			dst = append(dst, Group{Topic: ru.topic})
		}
		dst[i].Records = append(dst[i].Records, recs[ru.start:ru.end]...)
	}
	return dst
}
