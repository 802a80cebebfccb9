package burstlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBurstLogsOncePerWindow(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	b := Burst{Quiet: time.Hour}
	for range 100 {
		b.Log(l, slog.LevelWarn, "device busy")
	}
	if n := strings.Count(buf.String(), "device busy"); n != 1 {
		t.Fatalf("%d lines for one window", n)
	}
	b.start = time.Now().Add(-2 * time.Hour) // the window has closed
	b.Log(l, slog.LevelWarn, "device busy")
	if !strings.Contains(buf.String(), "suppressed_since_last=99") {
		t.Fatalf("suppressed count not reported:\n%s", buf.String())
	}
}

// A fixed window closes while events go on: a device failing every few
// seconds is logged once a window, not once for ever (the sliding window
// this replaced never closed).
func TestBurstWindowIsFixed(t *testing.T) {
	b := Burst{Quiet: time.Minute}
	t0 := time.Now()
	logged := 0
	for i := range 100 { // one event every 5 s for 500 s
		if _, ok := b.admit(t0.Add(time.Duration(i) * 5 * time.Second)); ok {
			logged++
		}
	}
	if logged < 8 || logged > 9 {
		t.Fatalf("%d lines over 500 s with a 60 s window, want 8 or 9", logged)
	}
}

func TestLimiterNewCauseLogsAtOnce(t *testing.T) {
	var l Limiter
	l.Window = time.Hour
	if _, ok := l.Allow("dial 10.0.0.7:502: connection refused"); !ok {
		t.Fatal("first event not logged")
	}
	if _, ok := l.Allow("dial 10.0.0.7:502: connection refused"); ok {
		t.Fatal("repeat logged within the window")
	}
	if _, ok := l.Allow("read 10.0.0.7:502: i/o timeout after 3s"); !ok {
		t.Fatal("a new cause was hidden behind the old one's window")
	}
	if _, ok := l.Allow("read 10.0.0.7:502: i/o timeout after 4s"); ok {
		t.Fatal("the same cause with another number counted as new")
	}
	if n := l.Take(); n != 2 {
		t.Fatalf("Take = %d suppressed, want 2", n)
	}
	if _, ok := l.Allow("dial 10.0.0.7:502: connection refused"); !ok {
		t.Fatal("after Take, a cause is news again")
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"timeout after 30s":        "timeout after #s",
		"10.0.0.1:502 refused":     "#.#.#.#:# refused",
		"bad password":             "bad password",
		"":                         "",
		"segment 000042 corrupt 7": "segment # corrupt #",
	} {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}
