package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/bus"
)

func TestTrackerSpans(t *testing.T) {
	tr := newTracker()
	for _, s := range []uint64{5, 6, 7, 10, 9, 9, 20, 8, 1} {
		tr.add("a", s)
	}
	r := tr.report().Sources["a"]
	if r.Unique != 8 || r.Duplicates != 1 || r.First != 1 || r.Last != 20 {
		t.Fatalf("report %+v", r)
	}
	want := []Span{{2, 4}, {11, 19}}
	if len(r.Gaps) != 2 || r.Gaps[0] != want[0] || r.Gaps[1] != want[1] {
		t.Fatalf("gaps %v, want %v", r.Gaps, want)
	}
	if r.OutOfOrder != 4 { // 9 (after 10), 9 again, 8, 1
		t.Fatalf("out of order %d", r.OutOfOrder)
	}
	// A long in-order run stays one span.
	for s := uint64(21); s < 100_000; s++ {
		tr.add("a", s)
	}
	if n := len(tr.sources["a"].spans); n != 3 {
		t.Fatalf("%d spans for three runs", n)
	}
}

func batch(source string, seqs ...uint64) *bus.Batch {
	b := &bus.Batch{}
	for _, s := range seqs {
		b.Records = append(b.Records, bus.Record{Source: source, Device: "d", Tag: "t", Value: bus.Long(int64(s)), Seq: s, SourceTime: 1e18, IngestTime: 1e18})
	}
	return b
}

func TestReceivesOverMQTTAndHTTP(t *testing.T) {
	c, err := Start(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	opts := paho.NewClientOptions().AddBroker("tcp://" + c.MQTTAddr()).SetClientID("test").SetConnectTimeout(5 * time.Second)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	tok := cl.Publish("plant/line1", 1, false, batch("gen", 1, 2, 3).AppendAvro(nil))
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	lines := batch("gen", 5, 3).AppendJSONLines(nil)
	resp, err := http.Post(c.HTTPURL()+"/ingest", bus.ContentTypeJSON, bytes.NewReader(lines))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("post: %v %v", resp, err)
	}
	resp.Body.Close()
	c.SetHTTPStatus(503)
	resp, _ = http.Post(c.HTTPURL(), bus.ContentTypeJSON, bytes.NewReader(lines))
	if resp.StatusCode != 503 {
		t.Fatalf("forced status: %d", resp.StatusCode)
	}
	resp.Body.Close()
	c.SetHTTPStatus(0)
	resp, _ = http.Post(c.HTTPURL(), "text/plain", bytes.NewReader([]byte("not json")))
	if resp.StatusCode != 400 {
		t.Fatalf("garbage accepted: %d", resp.StatusCode)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r, err := c.Wait(ctx, func(r Report) bool { return r.Records == 5 })
	if err != nil {
		t.Fatal(err)
	}
	s := r.Sources["gen"]
	if s.Unique != 4 || s.Duplicates != 1 || len(s.Gaps) != 1 || s.Gaps[0] != (Span{4, 4}) || r.Malformed != 1 || r.Missing() != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestCrashGapToldFromLoss(t *testing.T) {
	c := &Cloud{logger: slog.New(slog.DiscardHandler), t: newTracker()}
	send := func(b *bus.Batch) {
		t.Helper()
		if err := c.ingest(b.AppendAvro(nil)); err != nil {
			t.Fatal(err)
		}
	}
	announce := func(b *bus.Batch, kind string, from uint64) *bus.Batch {
		r := &b.Records[0]
		r.Attrs = map[string]string{"ferry.seq_gap": kind, "ferry.seq_gap_to": strconv.FormatUint(r.Seq, 10)}
		if kind == "crash" {
			r.Attrs["ferry.seq_gap_from"] = strconv.FormatUint(from, 10)
		}
		return b
	}
	const block, epoch = 1 << 20, 1_700_000_000_000_000
	// gen: 3 is lost; a crash after 6 skips the rest of the block [0, 2^20)
	// (7..9 were used and died with the process); 2^20+2 and +3 are lost;
	// then the seq store is rebuilt at a new epoch.
	send(batch("gen", 0, 1, 2, 4, 5, 6))
	send(announce(batch("gen", block, block+1), "crash", 0))
	send(announce(batch("gen", block, block+1), "crash", 0)) // redelivered
	send(batch("gen", block+4))
	send(announce(batch("gen", epoch, epoch+1), "epoch", 0))
	// b: the announcing record arrives first; 40..49 were lost before the
	// reservation the crash cut short, which began at 50.
	send(announce(batch("b", 100), "crash", 50))
	seqs := make([]uint64, 40)
	for i := range seqs {
		seqs[i] = uint64(i)
	}
	send(batch("b", seqs...))
	// j: the JSON form carries the same attributes.
	jb := announce(batch("j", 10), "crash", 5)
	if err := c.ingest(append(batch("j", 0, 1, 2, 3, 4).AppendJSONLines(nil), jb.AppendJSONLines(nil)...)); err != nil {
		t.Fatal(err)
	}

	r := c.Report()
	gen, b, j := r.Sources["gen"], r.Sources["b"], r.Sources["j"]
	check := func(name string, got, want []Span) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("gen loss", gen.Gaps, []Span{{3, 3}, {block + 2, block + 3}})
	check("gen crash", gen.CrashGaps, []Span{{7, block - 1}})
	check("gen epoch", gen.EpochGaps, []Span{{block + 5, epoch - 1}})
	check("b loss", b.Gaps, []Span{{40, 49}})
	check("b crash", b.CrashGaps, []Span{{50, 99}})
	check("j loss", j.Gaps, nil)
	check("j crash", j.CrashGaps, []Span{{5, 9}})
	if gen.Duplicates != 2 || r.Missing() != 1+2+10 || r.CrashSkipped() != (block-7)+50+5 {
		t.Errorf("duplicates %d, missing %d, crash-skipped %d", gen.Duplicates, r.Missing(), r.CrashSkipped())
	}
	js, err := json.Marshal(r)
	if err != nil || !bytes.Contains(js, []byte(`"crash_gaps":[{"From":7,`)) || !bytes.Contains(js, []byte(`"epoch_gaps":`)) {
		t.Errorf("json %s %v", js, err)
	}
}
