package cloud

import (
	"bytes"
	"context"
	"net/http"
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
