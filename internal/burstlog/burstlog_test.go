package burstlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBurstLogsOncePerBurst(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	b := Burst{Quiet: time.Hour}
	for range 100 {
		b.Log(l, slog.LevelWarn, "device busy")
	}
	if n := strings.Count(buf.String(), "device busy"); n != 1 {
		t.Fatalf("%d lines for one burst", n)
	}
	b.last = time.Now().Add(-2 * time.Hour) // the burst has ended
	b.Log(l, slog.LevelWarn, "device busy")
	if !strings.Contains(buf.String(), "suppressed_since_last=99") {
		t.Fatalf("suppressed count not reported:\n%s", buf.String())
	}
}
