package lvc

import (
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// clock is a cache clock a test moves by hand.
type clock struct{ t int64 }

func (c *clock) now() int64 { return c.t }

func newTestCache(max int) (*Cache, *clock) {
	c := New(max)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	c.now = clk.now
	return c, clk
}

func rec(src, dev, tag string, v bus.Value, q bus.Quality) bus.Record {
	return bus.Record{Source: src, Device: dev, Tag: tag, Value: v, Quality: q, SourceTime: 1e18, IngestTime: 1e18 + 5, Unit: "C", Seq: 7}
}

func TestLatestValueRateHistoryAndStale(t *testing.T) {
	c, clk := newTestCache(0)
	for i := range 20 {
		b := bus.Batch{Records: []bus.Record{
			rec("mb", "d1", "t", bus.Double(float64(i)), bus.Good),
			rec("mb", "d1", "s", bus.String("x"), bus.Good),
			rec("gen", "d2", "nan", bus.Double(math.NaN()), bus.Bad),
		}}
		c.Update(&b)
		clk.t += int64(500 * time.Millisecond)
	}
	got, ok := c.Get(Key{"mb", "d1", "t"})
	if !ok {
		t.Fatal("tag not cached")
	}
	if got.Value != 19.0 || got.Type != "double" || got.Quality != "GOOD" || got.Unit != "C" || got.Seq != 7 || got.Updates != 20 {
		t.Fatalf("latest %+v", got)
	}
	if got.Rate != 2 {
		t.Errorf("rate %v, want 2 updates a second", got.Rate)
	}
	if len(got.History) != HistoryLen || got.History[0] != 4 || got.History[HistoryLen-1] != 19 {
		t.Errorf("history %v, want the last %d values, oldest first", got.History, HistoryLen)
	}
	if got.Stale {
		t.Error("a tag updated half a second ago is stale")
	}
	if n, _ := c.Get(Key{"gen", "d2", "nan"}); n.Value != "NaN" {
		t.Errorf("NaN shows as %#v, want the string NaN (JSON has no NaN)", n.Value)
	}
	// The device stops: after three of its intervals (and at least
	// minStale), every one of its tags is stale.
	clk.t += int64(minStale)
	if got, _ := c.Get(Key{"mb", "d1", "s"}); !got.Stale {
		t.Errorf("silent for %v, not stale: %+v", minStale, got)
	}
	stale := true
	p := c.Query(Query{Stale: &stale})
	if p.Matched != 3 {
		t.Errorf("stale query matched %d, want 3", p.Matched)
	}
}

func TestQueryFiltersAndPages(t *testing.T) {
	c, _ := newTestCache(0)
	var b bus.Batch
	for d := range 3 {
		for i := range 50 {
			q := bus.Good
			if i%10 == 0 {
				q = bus.Bad
			}
			b.Records = append(b.Records, rec("src", fmt.Sprintf("dev%d", d), fmt.Sprintf("line/t%02d", i), bus.Long(int64(i)), q))
		}
	}
	c.Update(&b)
	p := c.Query(Query{Device: "dev1", Limit: 20, Offset: 40})
	if p.Total != 150 || p.Matched != 50 || len(p.Tags) != 10 || p.Tags[0].Tag != "line/t40" {
		t.Fatalf("page: total %d matched %d len %d first %+v", p.Total, p.Matched, len(p.Tags), p.Tags)
	}
	if p := c.Query(Query{Quality: "BAD"}); p.Matched != 15 {
		t.Errorf("BAD matched %d, want 15", p.Matched)
	}
	if p := c.Query(Query{Match: func(s string) bool { return s == "dev2/line/t07" }}); p.Matched != 1 || p.Tags[0].Device != "dev2" {
		t.Errorf("match: %+v", p)
	}
	c.Forget("src")
	if c.Len() != 0 || c.Query(Query{}).Matched != 0 {
		t.Error("forget kept tags")
	}
}

func TestBoundedTags(t *testing.T) {
	c, _ := newTestCache(10)
	var b bus.Batch
	for i := range 25 {
		b.Records = append(b.Records, rec("s", "d", fmt.Sprint(i), bus.Long(1), bus.Good))
	}
	c.Update(&b)
	c.Update(&b)
	p := c.Query(Query{})
	if p.Total != 10 || p.Over != 30 {
		t.Fatalf("total %d, not cached %d; want 10 and 30", p.Total, p.Over)
	}
}

// TestNoAllocationOnUpdate: once a batch's tags are known, taking it again
// allocates nothing.
func TestNoAllocationOnUpdate(t *testing.T) {
	c, _ := newTestCache(0)
	b := batchOf(1000, 0)
	c.Update(&b)
	if n := testing.AllocsPerRun(100, func() { c.Update(&b) }); n != 0 {
		t.Fatalf("%v allocations per update", n)
	}
}

func batchOf(n, base int) bus.Batch {
	var b bus.Batch
	for i := range n {
		b.Records = append(b.Records, bus.Record{Source: "plc", Device: fmt.Sprintf("dev%03d", (base+i)/1000),
			Tag: fmt.Sprintf("area/line/tag%05d", base+i), Value: bus.Double(float64(i)), Unit: "bar", SourceTime: 1, IngestTime: 2})
	}
	return b
}

// BenchmarkBytesPerTag fills a cache with 100,000 tags and reports the heap
// it holds per tag, names excluded (they belong to the records).
func BenchmarkBytesPerTag(b *testing.B) {
	const tags = 100_000
	batches := make([]bus.Batch, tags/1000)
	for i := range batches {
		batches[i] = batchOf(1000, i*1000)
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := New(tags)
		for i := range batches {
			c.Update(&batches[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() != tags {
			b.Fatalf("%d tags cached", c.Len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/tags, "bytes/tag")
		runtime.KeepAlive(c)
	}
}

// BenchmarkUpdate is the cost the engine pays per batch of 1000 records.
func BenchmarkUpdate(b *testing.B) {
	c := New(0)
	batch := batchOf(1000, 0)
	c.Update(&batch)
	b.ReportAllocs()
	for b.Loop() {
		c.Update(&batch)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}
