package router

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/ferry-gateway/ferry/connectors/line"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// A file tail held back by its sink's full spool (on_full: block, the sink
// refusing everything) is stopped; the next run, with the sink taking
// again, delivers every line exactly once: what the spool took drains from
// it, and the batch refused at the stop is read from the file again.
func TestStopRefusedLinesComeAgain(t *testing.T) {
	dir, log := t.TempDir(), filepath.Join(t.TempDir(), "machine.log")
	const lines = 6000
	var text strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&text, "seq=%d\n", i)
	}
	if err := os.WriteFile(log, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(sink string) *Config {
		c := load(t, fmt.Sprintf(`
connectors:
  tail:
    type: line
    file: %s
    start_at: beginning
    poll_interval: 5ms
    batch_size: 50
    parse: {format: kv, value_type: long}
  out:
    %s
    store_and_forward: {quota: 64KiB, segment_size: 64KiB, on_full: block}
routes:
  - {from: tail, to: out}
`, log, sink))
		c.DataDir = dir
		return c
	}

	p := start(t, config("type: testcapture\n    fail: 1000000"))
	spooled := func() int64 {
		for _, m := range p.Status().Modules {
			if m.Name == "out" && m.Spool != nil {
				return m.Spool.Records
			}
		}
		return 0
	}
	waitfor.Until(t, 20*time.Second, func() bool {
		for _, m := range p.Status().Modules {
			if m.Name == "out" && m.Spool != nil {
				return m.Spool.Bytes > 64<<10-2<<10
			}
		}
		return false
	}, waitfor.Say("the spool fills"))
	if n := spooled(); n >= lines {
		t.Fatalf("the spool took all %d lines; it was meant to fill first", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(t0); took > 15*time.Second {
		t.Fatalf("Stop took %v", took)
	}

	p = start(t, config("type: testcapture"))
	defer drainStop(t, p, captures["out"].got)
	seen := make(map[int64]int, lines)
	for len(seen) < lines {
		select {
		case b := <-captures["out"].got:
			for _, r := range b.Records {
				seen[r.Value.Long()]++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d lines arrived", len(seen), lines)
		}
	}
	for v, n := range seen {
		if n != 1 || v < 1 || v > lines {
			t.Errorf("seq=%d arrived %d times", v, n)
		}
	}
}
