package topics

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func resolver(t *testing.T, tmpl string) *Resolver {
	t.Helper()
	tp, err := Parse(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return NewResolver(tp, "s1", "up")
}

func recs(spec ...string) []bus.Record {
	var out []bus.Record
	for i, s := range spec {
		out = append(out, bus.Record{Source: "plc1", Device: s, Tag: fmt.Sprintf("t%d", i%3), Seq: uint64(i)})
	}
	return out
}

func seqs(rs []bus.Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

// TestGroupOneTopicNoCopy: a batch that maps to one topic, as a poll does
// on the default ferry/{site}/{source}, is handed on as it is.
func TestGroupOneTopicNoCopy(t *testing.T) {
	for _, tmpl := range []string{"ferry/{site}/{source}", "ferry/{site}/{module}", "x/{device}"} {
		r := resolver(t, tmpl)
		b := recs("a", "a", "a", "a")
		g := r.Group(nil, b)
		if len(g) != 1 || len(g[0].Records) != 4 || &g[0].Records[0] != &b[0] {
			t.Fatalf("%s: %d groups, records copied: %v", tmpl, len(g), len(g) == 1 && &g[0].Records[0] != &b[0])
		}
	}
}

func TestGroup(t *testing.T) {
	r := resolver(t, "ferry/{site}/{device}")
	// Contiguous topics: slices of the batch, in order.
	b := recs("a", "a", "b", "c", "c")
	g := r.Group(nil, b)
	if len(g) != 3 || g[0].Topic != "ferry/s1/a" || g[2].Topic != "ferry/s1/c" || &g[1].Records[0] != &b[2] || len(g[2].Records) != 2 {
		t.Fatalf("contiguous: %+v", g)
	}
	// A topic spread between others: its records gathered, in order,
	// groups in order of their first record.
	b = recs("a", "b", "a", "c", "b", "a")
	g = r.Group(g[:0], b)
	var got [][]uint64
	var topics []string
	for _, x := range g {
		got = append(got, seqs(x.Records))
		topics = append(topics, x.Topic)
	}
	want := [][]uint64{{0, 2, 5}, {1, 4}, {3}}
	if fmt.Sprint(got) != fmt.Sprint(want) || !slices.Equal(topics, []string{"ferry/s1/a", "ferry/s1/b", "ferry/s1/c"}) {
		t.Fatalf("spread: %v on %v, want %v", got, topics, want)
	}
	if g := r.Group(nil, nil); len(g) != 0 {
		t.Fatalf("empty batch: %d groups", len(g))
	}
}

// TestTopicCache: a topic is rendered once per distinct key and shared;
// fields the template does not use do not split the cache; and the cache
// starts over rather than grow past its bound.
func TestTopicCache(t *testing.T) {
	r := resolver(t, "p/{device}/{tag}")
	a := bus.Record{Source: "x", Device: "d", Tag: "t"}
	b := bus.Record{Source: "y", Device: "d", Tag: "t", Seq: 9}
	if r.Topic(&a) != "p/d/t" || r.Topic(&b) != "p/d/t" || len(r.cache) != 1 {
		t.Fatalf("topics %q %q, %d cache entries", r.Topic(&a), r.Topic(&b), len(r.cache))
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = r.Topic(&b) }); allocs != 0 {
		t.Errorf("cached topic: %v allocs", allocs)
	}
	for i := range maxCached + 10 {
		rec := bus.Record{Device: "d", Tag: fmt.Sprint(i)}
		if got, want := r.Topic(&rec), "p/d/"+fmt.Sprint(i); got != want {
			t.Fatalf("topic %q, want %q", got, want)
		}
	}
	if len(r.cache) > maxCached {
		t.Fatalf("%d cache entries, bound %d", len(r.cache), maxCached)
	}
	if r2 := resolver(t, "plain/{site}/{module}"); r2.Topic(&a) != "plain/s1/up" {
		t.Fatalf("fixed topic %q", r2.Topic(&a))
	}
}

func TestPerTag(t *testing.T) {
	for tmpl, want := range map[string]bool{"a/{tag}": true, "{device}/{tag}/x": true, "ferry/{site}/{source}": false, "x": false} {
		tp, err := Parse(tmpl)
		if err != nil || tp.PerTag() != want {
			t.Errorf("%s: PerTag %v (%v), want %v", tmpl, tp.PerTag(), err, want)
		}
	}
}

// BenchmarkGroup: the per-batch topic work of the uplink on the default
// topic ferry/{site}/{source}, for a poll of 1,000 registers.
func BenchmarkGroup(b *testing.B) {
	r := resolverB(b, "ferry/{site}/{source}")
	batch := make([]bus.Record, 1000)
	for i := range batch {
		batch[i] = bus.Record{Source: "plc1", Device: "press-01", Tag: fmt.Sprint("hr/", i)}
	}
	var g []Group
	for b.Loop() {
		g = r.Group(g[:0], batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
}

func resolverB(b *testing.B, tmpl string) *Resolver {
	tp, err := Parse(tmpl)
	if err != nil {
		b.Fatal(err)
	}
	return NewResolver(tp, "s1", "up")
}
