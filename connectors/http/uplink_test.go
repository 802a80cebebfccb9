package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router/outlet"
)

// receiver is a plain HTTP server taking the uplink's batches: it answers
// after rtt (the link's round trip), with status() (200 when it returns
// 0), and counts requests, records and the most requests in progress at
// once.
type receiver struct {
	srv      *httptest.Server
	rtt      time.Duration
	status   atomic.Int32
	token    string // when set, "Bearer <token>" is required (401 otherwise)
	inFlight atomic.Int32
	maxIn    atomic.Int32
	requests atomic.Int32
	mu       sync.Mutex
	records  int
}

func newReceiver(t *testing.T, rtt time.Duration) *receiver {
	r := &receiver{rtt: rtt}
	r.srv = httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, req *nethttp.Request) {
		n := r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		for {
			m := r.maxIn.Load()
			if n <= m || r.maxIn.CompareAndSwap(m, n) {
				break
			}
		}
		r.requests.Add(1)
		body, _ := io.ReadAll(req.Body)
		if r.rtt > 0 {
			time.Sleep(r.rtt) // the link's round trip, not a wait for an event
		}
		if r.token != "" && req.Header.Get("Authorization") != "Bearer "+r.token {
			nethttp.Error(w, "bad token", nethttp.StatusUnauthorized)
			return
		}
		if s := r.status.Load(); s != 0 {
			nethttp.Error(w, "forced", int(s))
			return
		}
		r.mu.Lock()
		r.records += strings.Count(string(body), "\n")
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records
}

// queue fills a memory outlet with n batches of per records.
func queue(t *testing.T, n, per int) *outlet.Memory {
	t.Helper()
	q := outlet.NewMemory(outlet.BufferConfig{MaxBytes: conf.Size(64 << 20)}, nil)
	for range n {
		b := conntest.SampleBatch(per)
		if err := q.Put(t.Context(), &b, outlet.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

// drain runs the outlet's runner for h until want records arrived.
func drain(t *testing.T, h *HTTP, env *connectors.Env, q *outlet.Memory, window int, r *receiver, want int) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	began := time.Now()
	go func() { defer close(done); outlet.Run(ctx, h, env, q, window) }()
	waitfor.Until(t, 60*time.Second, func() bool { return r.got() >= want },
		func() string { return fmt.Sprintf("%d of %d records", r.got(), want) })
	took := time.Since(began)
	cancel()
	<-done
	return took
}

// TestPipelinedDrain: against a receiver with a 50 ms round trip, a
// backlog of 64 batches goes out with window requests in flight, not one
// at a time.
func TestPipelinedDrain(t *testing.T) {
	const batches, per, window = 64, 10, 16
	var serial, piped time.Duration
	for _, w := range []int{1, window} {
		r := newReceiver(t, 50*time.Millisecond)
		h, env := newSink(t, r.srv.URL, func(c *Config) { c.Format = "json-lines" })
		if err := h.Start(t.Context(), env); err != nil {
			t.Fatal(err)
		}
		took := drain(t, h, env, queue(t, batches, per), w, r, batches*per)
		// The runner holds window batches queued for their answers, one in
		// the hand of the goroutine that waits, and sends the next.
		if got := int(r.maxIn.Load()); got < w || got > w+2 {
			t.Errorf("window %d: %d requests in flight at most, want %d to %d", w, got, w, w+2)
		}
		if w == 1 {
			serial = took
		} else {
			piped = took
		}
		_ = h.Stop(t.Context())
	}
	t.Logf("64 batches at 50ms round trip: %v one at a time, %v with window %d (%.1f× faster)",
		serial.Round(time.Millisecond), piped.Round(time.Millisecond), window, float64(serial)/float64(piped))
}

// TestUnauthorizedBurst: 401s put the sink down with the cause and
// dead-letter nothing; a reload with the right token (a new sink instance
// on the same queue) delivers every batch.
func TestUnauthorizedBurst(t *testing.T) {
	r := newReceiver(t, 0)
	r.token = "good"
	const batches, per = 30, 4
	q := queue(t, batches, per)
	bad, env := newSink(t, r.srv.URL, func(c *Config) {
		c.Format = "json-lines"
		c.Headers = map[string]string{"Authorization": "Bearer wrong"}
		c.MaxBackoff = conf.Duration(200 * time.Millisecond)
	})
	if err := bad.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); outlet.Run(ctx, bad, env, q, 8) }()
	waitfor.Until(t, 10*time.Second, func() bool {
		// Asked again after a 401 (how many times depends on how many
		// requests the first window sent before the back-off began).
		return r.requests.Load() >= 3 && env.State().Phase() == connectors.PhaseDown
	}, func() string { return fmt.Sprintf("%d requests, phase %s", r.requests.Load(), env.State().Phase()) })
	if snap := env.State().Snapshot(); !strings.Contains(snap.LastError, "401") || !strings.Contains(snap.LastError, "credentials") {
		t.Errorf("last error %q; want the 401 and what to check", snap.LastError)
	}
	cancel()
	<-done
	if files := bad.dead.list(); len(files) != 0 {
		t.Fatalf("dead-letter files %v after 401s", files)
	}

	good, env2 := newSink(t, r.srv.URL, func(c *Config) {
		c.Format = "json-lines"
		c.Headers = map[string]string{"Authorization": "Bearer good"}
	})
	if err := good.Start(t.Context(), env2); err != nil {
		t.Fatal(err)
	}
	drain(t, good, env2, q, 8, r, batches*per)
	if got := r.got(); got != batches*per {
		t.Errorf("%d records, want %d", got, batches*per)
	}
}

// TestAnswerClasses: which answers dead-letter, which retry.
func TestAnswerClasses(t *testing.T) {
	for status, want := range map[int]int{200: classOK, 204: classOK, 400: classPayload, 413: classPayload, 415: classPayload,
		422: classPayload, 401: classConfig, 403: classConfig, 404: classConfig, 405: classConfig, 301: classConfig,
		408: classTransient, 429: classTransient, 500: classTransient, 503: classTransient} {
		if got := classify(status); got != want {
			t.Errorf("%d: class %d, want %d", status, got, want)
		}
	}
	r := newReceiver(t, 0)
	h, env := newSink(t, r.srv.URL, func(c *Config) { c.MaxBackoff = conf.Duration(100 * time.Millisecond) })
	if err := h.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	b := conntest.SampleBatch(2)
	for _, s := range []int{401, 403, 404} {
		r.status.Store(int32(s))
		err := h.Write(t.Context(), &b)
		if !errors.Is(err, ErrRefused) || errors.Is(err, connectors.ErrPoison) {
			t.Errorf("%d: %v, want ErrRefused and no poison", s, err)
		}
	}
	if files := h.dead.list(); len(files) != 0 {
		t.Errorf("dead-letter files %v", files)
	}
}

// TestDeadLetterRotationAndReplay: refused batches fill at most
// dead_letter_files files of dead_letter_max_size; the oldest is dropped
// and counted; a replay once the far side takes them sends what is left
// and empties the files.
func TestDeadLetterRotationAndReplay(t *testing.T) {
	r := newReceiver(t, 0)
	r.status.Store(422)
	h, env := newSink(t, r.srv.URL, func(c *Config) {
		c.Format = "json-lines"
		c.DeadLetterMaxSize = conf.Size(4 << 10)
		c.DeadLetterFiles = 2
	})
	if err := h.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		b := conntest.SampleBatch(3)
		b.Records[0].Seq = uint64(i)
		if err := h.Write(t.Context(), &b); !errors.Is(err, connectors.ErrPoison) {
			t.Fatalf("422 must be poison: %v", err)
		}
	}
	files := h.dead.list()
	if len(files) != 2 {
		t.Fatalf("files %v, want the current one and one rotated", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 4<<10 {
			t.Errorf("%s: %v bytes (%v), want at most 4KiB", f, fi.Size(), err)
		}
	}
	entries, err := h.ListDeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	dropped := testutil.ToFloat64(h.dead.dropped)
	if dropped == 0 || len(entries)+int(dropped) != n {
		t.Errorf("%d listed + %v dropped, want %d", len(entries), dropped, n)
	}
	r.status.Store(0)
	var out strings.Builder
	res, err := h.ReplayDeadLetters(t.Context(), &out)
	if err != nil || res.Sent != len(entries) || res.Refused != 0 {
		t.Fatalf("replay %+v %v, want %d sent", res, err, len(entries))
	}
	if got := r.got(); got != 3*len(entries) {
		t.Errorf("receiver got %d records, want %d", got, 3*len(entries))
	}
	if files := h.dead.list(); len(files) != 0 {
		t.Errorf("files %v left after the replay", files)
	}
}
