package http

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// startHook runs a webhook with the given limits on the conntest rig.
func startHook(t *testing.T, concurrent int, bodyTimeout time.Duration) (*HTTP, *conntest.Runner) {
	t.Helper()
	rig := startHookWith(t, func(c *Config) {
		c.MaxBody, c.MaxConcurrent, c.BodyTimeout = 1024, concurrent, conf.Duration(bodyTimeout)
		c.BatchInterval = conf.Duration(5 * time.Millisecond)
	})
	return rig.h, rig.r
}

func (h *HTTP) refusedCount(reason string) float64 {
	return testutil.ToFloat64(h.hook.refused.WithLabelValues(h.hook.env.Name, reason))
}

// slowBody sends a request's headers and the first byte of its body, and
// no more.
func slowBody(t *testing.T, h *HTTP) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.WebhookAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, "POST /ingest HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer t0ken\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	return c
}

func postGood(t *testing.T, h *HTTP) (int, string) {
	t.Helper()
	req, _ := nethttp.NewRequest("POST", "http://"+h.WebhookAddr()+"/ingest", bytes.NewBufferString(`{"device":"m1","tag":"good","value":1}`))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebhookCutsSlowBodies: bodies that do not arrive within body_timeout
// are answered 408 and their slots freed; a good client is served.
func TestWebhookCutsSlowBodies(t *testing.T) {
	h, r := startHook(t, 2, 200*time.Millisecond)
	slow := []net.Conn{slowBody(t, h), slowBody(t, h)}
	for i, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("slow body %d: no answer: %v", i, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != nethttp.StatusRequestTimeout {
			t.Errorf("slow body %d: %d, want 408", i, resp.StatusCode)
		}
	}
	waitfor.Until(t, 10*time.Second, func() bool { return h.refusedCount(refusedBodyTimeout) == 2 },
		func() string {
			return fmt.Sprintf("%v body timeouts counted, want 2", h.refusedCount(refusedBodyTimeout))
		})
	if code, answer := postGood(t, h); code != nethttp.StatusAccepted {
		t.Fatalf("good client: %d %q", code, answer)
	}
	if b := r.Next(t, 10*time.Second); b.Records[0].Tag != "good" {
		t.Errorf("got %+v", b.Records)
	}
}

// TestWebhookBoundsConcurrentBodies: with max_concurrent bodies being
// read, another request is answered 503 at once; once a slot is free, a
// good client is served.
func TestWebhookBoundsConcurrentBodies(t *testing.T) {
	h, r := startHook(t, 2, time.Hour)
	a, b := slowBody(t, h), slowBody(t, h)
	waitfor.Until(t, 10*time.Second, func() bool { return len(h.hook.slots) == 2 },
		func() string { return fmt.Sprintf("%d slots taken, want 2", len(h.hook.slots)) })
	code, answer := postGood(t, h)
	if code != nethttp.StatusServiceUnavailable || !strings.Contains(answer, "max_concurrent") {
		t.Fatalf("with every slot taken: %d %q, want 503", code, answer)
	}
	if n := h.refusedCount(refusedBusy); n != 1 {
		t.Errorf("%v busy refusals counted, want 1", n)
	}
	_ = a.Close() // a client that gives up frees its slot
	waitfor.Until(t, 10*time.Second, func() bool { return len(h.hook.slots) == 1 },
		func() string { return fmt.Sprintf("%d slots taken, want 1", len(h.hook.slots)) })
	if code, answer := postGood(t, h); code != nethttp.StatusAccepted {
		t.Fatalf("good client: %d %q", code, answer)
	}
	r.Next(t, 10*time.Second)
	_ = b.Close()
}

// TestWebhookMemoryBounded: many concurrent authorised bodies of max_body
// take at most about max_concurrent of them in memory (each body, and
// about twice it again while the JSON is parsed); the rest are answered
// 503 at once.
func TestWebhookMemoryBounded(t *testing.T) {
	const concurrent, clients, maxBody = 4, 40, 1 << 20
	h, r := startHook(t, concurrent, 10*time.Second)
	h.hook.cfg.MaxBody = maxBody
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the bus holds a publish until it is acknowledged
		for {
			select {
			case m := <-r.Msgs:
				m.Ack()
			case <-stop:
				return
			}
		}
	}()
	body := []byte(`{"tag":"x","value":"` + strings.Repeat("a", maxBody-40) + `"}`)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var served, busy atomic.Int32
	for range clients {
		wg.Go(func() {
			req, _ := nethttp.NewRequest("POST", "http://"+h.WebhookAddr()+"/ingest", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer t0ken")
			resp, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				return // a refused request's connection may be closed before its body is sent
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			switch resp.StatusCode {
			case nethttp.StatusAccepted:
				served.Add(1)
			case nethttp.StatusServiceUnavailable:
				busy.Add(1)
			}
		})
	}
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("no request served")
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	const bound = 4*concurrent*maxBody + 16<<20
	t.Logf("%d served, %d busy; heap in use grew by %d MiB at its peak (bound %d MiB)", served.Load(), busy.Load(), grew>>20, bound>>20)
	if grew > bound {
		t.Errorf("heap grew by %d MiB with max_concurrent %d and max_body 1MiB, want at most %d MiB", grew>>20, concurrent, bound>>20)
	}
	if got := h.refusedCount(refusedBusy); got != float64(busy.Load()) {
		t.Errorf("%v busy refusals counted, %d answered", got, busy.Load())
	}
}
