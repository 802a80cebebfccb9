package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// post sends body to the webhook with the given headers, as curl would.
func post(t *testing.T, h *HTTP, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := nethttp.NewRequest("POST", "http://"+h.WebhookAddr()+"/ingest", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gz(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

// TestWebhookConventions: the bearer scheme in any case, gzip bodies, a
// numeric ts, and every refusal counted.
func TestWebhookConventions(t *testing.T) {
	h, r := startHook(t, 4, 5*time.Second)
	rec := []byte(`{"device":"m1","tag":"t","value":1,"ts":1796533200000}`)
	for _, auth := range []string{"Bearer t0ken", "bearer t0ken", "BEARER  t0ken"} {
		if code, body := post(t, h, rec, map[string]string{"Authorization": auth}); code != 202 {
			t.Errorf("%q: %d %s, want 202", auth, code, body)
		}
	}
	if code, _ := post(t, h, rec, map[string]string{"Authorization": "Basic t0ken"}); code != 401 {
		t.Errorf("Basic: %d, want 401", code)
	}
	if code, body := post(t, h, gz(t, rec), map[string]string{"Authorization": "Bearer t0ken", "Content-Encoding": "gzip"}); code != 202 {
		t.Errorf("gzip: %d %s, want 202", code, body)
	}
	if code, _ := post(t, h, rec, map[string]string{"Authorization": "Bearer t0ken", "Content-Encoding": "br"}); code != 415 {
		t.Errorf("br: %d, want 415", code)
	}
	if code, _ := post(t, h, []byte("not gzip"), map[string]string{"Authorization": "Bearer t0ken", "Content-Encoding": "gzip"}); code != 400 {
		t.Errorf("bad gzip: %d, want 400", code)
	}
	if code, _ := post(t, h, []byte(`{"tag":`), map[string]string{"Authorization": "Bearer t0ken"}); code != 400 {
		t.Errorf("bad json: %d, want 400", code)
	}
	// A zip bomb: 900 bytes that inflate past max_body (1KiB).
	bomb := gz(t, bytes.Repeat([]byte(" "), 1<<20))
	if code, _ := post(t, h, bomb, map[string]string{"Authorization": "Bearer t0ken", "Content-Encoding": "gzip"}); code != 413 {
		t.Errorf("zip bomb of %d bytes: %d, want 413", len(bomb), code)
	}
	var got []string
	for len(got) < 4 {
		for _, rc := range r.Next(t, 5*time.Second).Records {
			got = append(got, time.Unix(0, rc.SourceTime).UTC().Format(time.RFC3339))
		}
	}
	if got[0] != "2026-12-06T05:00:00Z" {
		t.Errorf("ts in milliseconds read as %s", got[0])
	}
	for reason, want := range map[string]float64{refusedUnauthorized: 1, refusedEncoding: 1, refusedBadRequest: 2, refusedTooLarge: 1} {
		if n := h.refusedCount(reason); n != want {
			t.Errorf("ferry_webhook_refused_total{reason=%q} = %v, want %v", reason, n, want)
		}
	}
}

// TestWebhookEarly413: a declared length over max_body is answered before
// a byte of the body is sent; an undeclared one as soon as max_body is
// passed, while the client is still sending.
func TestWebhookEarly413(t *testing.T) {
	h, _ := startHook(t, 4, 5*time.Second)
	c, err := net.Dial("tcp", h.WebhookAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer t0ken\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", 10<<20)
	line, err := readStatus(c)
	if err != nil || !strings.Contains(line, "413") {
		t.Fatalf("declared 10MiB: %q %v, want 413 before the body", line, err)
	}

	c2, err := net.Dial("tcp", h.WebhookAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c2, "POST /ingest HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer t0ken\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := strings.Repeat("x", 2048) // past max_body (1KiB) in one chunk; the body never ends
	fmt.Fprintf(c2, "%x\r\n%s\r\n", len(chunk), chunk)
	line, err = readStatus(c2)
	if err != nil || !strings.Contains(line, "413") {
		t.Fatalf("chunked past max_body: %q %v, want 413 while the body is still open", line, err)
	}
}

func readStatus(c net.Conn) (string, error) {
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 12)
	return string(buf[:n]), err
}

// TestWebhookAckEmitted: with ack: emitted the 202 comes after the bus
// took the records.
func TestWebhookAckEmitted(t *testing.T) {
	h := startHookWith(t, func(c *Config) { c.Ack = AckEmitted })
	// The rig's bus holds a publish until it is read: the answer cannot
	// come before the batch was taken from the bus.
	answered := make(chan string, 1)
	go func() {
		code, body := post(t, h.h, []byte(`[{"tag":"a","value":1},{"tag":"b","value":2}]`), map[string]string{"Authorization": "Bearer t0ken"})
		answered <- fmt.Sprint(code, " ", strings.TrimSpace(body))
	}()
	m := h.r.Next(t, 5*time.Second)
	if len(m.Records) != 2 {
		t.Fatalf("batch of %d records, want 2", len(m.Records))
	}
	if a := <-answered; a != `202 {"accepted":2}` {
		t.Fatalf("answer %q", a)
	}
}

type hookRig struct {
	h *HTTP
	r *conntest.Runner
}

// startHookWith runs a webhook whose batcher never flushes on time
// (batch_interval 1h), changed by mod.
func startHookWith(t *testing.T, mod func(*Config)) hookRig {
	t.Helper()
	h := &HTTP{Config: Config{Listen: "127.0.0.1:0", Token: "t0ken", BatchInterval: conf.Duration(time.Hour)}}
	mod(&h.Config)
	h.SetDefaults()
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	r := conntest.NewRunner(t, h, connectors.EnvConfig{Name: "hook"})
	if err := h.Start(t.Context(), r.Env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return hookRig{h, r}
}
