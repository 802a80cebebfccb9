package flaky

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echo is a line echo server on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(t.Context(), Config{Target: echo(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestForwardsAndCounts(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("echo: %q %v", got, err)
	}
	if s := p.Stats(); s.BytesUp != 6 || s.BytesDown != 6 || s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCutResetsAndRefuses(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Cut)
	if _, err := roundTrip(c, r, "b", 5*time.Second); err == nil {
		t.Fatal("open connection survived a cut")
	}
	// The kernel may complete the handshake; the proxy resets it at once,
	// so either the dial or the first exchange fails.
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), "c", 5*time.Second); err == nil {
			t.Fatal("new connection worked while cut")
		}
	}
	p.SetMode(Up)
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "d", 5*time.Second); err != nil || got != "d" {
		t.Fatalf("after restore: %q %v", got, err)
	}
	if p.Stats().Refused == 0 {
		t.Fatal("refusal not counted")
	}
}

func TestBlackholeHoldsThenResumes(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	p.SetMode(Blackhole)
	_, err := roundTrip(c, r, "held", 200*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blackholed request answered or failed fast: %v", err)
	}
	p.SetMode(Up)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n') // the held bytes go through once the link is back
	if err != nil || line != "held\n" {
		t.Fatalf("after blackhole: %q %v", line, err)
	}
}

func TestResetAfterBytes(t *testing.T) {
	p := start(t)
	p.ResetAfter(20)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "12345", 5*time.Second); err != nil { // 12 bytes both ways
		t.Fatal(err)
	}
	if _, err := roundTrip(c, r, "6789012345", 5*time.Second); err == nil {
		t.Fatal("connection not reset after the byte limit")
	}
	if p.Stats().Resets != 1 {
		t.Fatalf("resets %d", p.Stats().Resets)
	}
}

func TestLatencyAndBandwidthSlowDown(t *testing.T) {
	p := start(t)
	p.SetLatency(50 * time.Millisecond)
	c, r := dial(t, p)
	began := time.Now()
	if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Two crossings of 50ms each: a lower bound only, never a speed check.
	if d := time.Since(began); d < 100*time.Millisecond {
		t.Fatalf("round trip %v with 50ms added each way", d)
	}
	p.SetLatency(0)
	p.SetBandwidth(10_000)
	began = time.Now()
	payload := make([]byte, 2000)
	for i := range payload {
		payload[i] = 'a'
	}
	if _, err := roundTrip(c, r, string(payload), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 300*time.Millisecond { // 2×2001 bytes at 10 kB/s ≈ 400ms
		t.Fatalf("2 kB each way at 10 kB/s took %v", d)
	}
}

func TestSchedule(t *testing.T) {
	p := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p.RunSchedule(ctx, []Step{{Wait: time.Millisecond, Mode: Cut}, {Wait: time.Millisecond, Mode: Blackhole}}, false)
	if p.Mode() != Blackhole {
		t.Fatalf("mode after schedule: %v", p.Mode())
	}
}

// The bucket holds the rate over any span, gives back no more than
// BandwidthBurst of credit after a pause, and a sleeper that wakes late
// loses nothing.
func TestBucketRate(t *testing.T) {
	const rate = 100_000 // bytes/s: 1 byte = 10µs
	var b bucket
	t0 := time.Unix(1000, 0)
	// An idle link: the burst goes at once, then each byte waits its turn.
	burst := int(BandwidthBurst.Seconds() * rate)
	if d := b.take(t0, burst, rate); d > 0 {
		t.Fatalf("the burst waited %v", d)
	}
	if d := b.take(t0, 1000, rate); d != 10*time.Millisecond {
		t.Fatalf("1000 bytes after the burst wait %v, want 10ms", d)
	}
	// Sustained: 1 s of bytes in 100 takes ends 1 s after the last grant,
	// whenever the caller woke (here always 5 ms late).
	now := t0
	var wait time.Duration
	for range 100 {
		wait = b.take(now, rate/100, rate)
		now = now.Add(max(wait, 0) + 5*time.Millisecond)
	}
	if end := now.Add(-5 * time.Millisecond).Sub(t0); end < time.Second || end > time.Second+10*time.Millisecond+5*time.Millisecond {
		t.Fatalf("1 s of traffic (plus 10 ms queued) ended after %v", end)
	}
	// A long pause earns the burst, not more.
	later := now.Add(time.Hour)
	if d := b.take(later, burst+1000, rate); d != 10*time.Millisecond {
		t.Fatalf("after an hour idle, burst+1000 bytes wait %v, want 10ms", d)
	}
}

// The limit is the link's: two connections share it.
func TestBandwidthIsSharedByConnections(t *testing.T) {
	p := start(t)
	const rate = 200_000
	p.SetBandwidth(rate)
	payload := strings.Repeat("a", 50_000)
	began := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		c, r := dial(t, p)
		go func() { _, err := roundTrip(c, r, payload, 30*time.Second); errs <- err }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// 100 kB each way through a 200 kB/s link: at least 0.5 s less the
	// burst, however fast the machine. A lower bound only.
	if d, least := time.Since(began), 500*time.Millisecond-BandwidthBurst; d < least {
		t.Fatalf("100 kB each way at 200 kB/s took %v, want at least %v", d, least)
	}
	if s := p.Stats(); s.BytesUp != 2*50_001 || s.BytesDown != 2*50_001 {
		t.Fatalf("stats %+v", s)
	}
}
