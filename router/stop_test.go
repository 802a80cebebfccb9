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
	waitFull(t, p, "out", 64<<10-2<<10)
	stopPromptly(t, p)

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

// A source held back by a full spool under on_full: block (its sink
// refusing everything) does not hold up a stop: the spool stops waiting
// for room, the source's emit is refused (bus.Refuse: it keeps the batch,
// which the spool never accepted), and Stop returns long before its
// deadline instead of spending half of it on the source.
func TestStopWithBlockingSpoolFull(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter, count: 20}]
  refusing:
    type: testcapture
    fail: 1000000
    store_and_forward: {quota: 64KiB, segment_size: 64KiB, on_full: block}
routes:
  - {from: gen, to: refusing}
`)
	p := start(t, c)
	// Full: the next batch (20 records, some 530 bytes) does not fit, and
	// the generator waits in its emit.
	waitFull(t, p, "refusing", 64<<10-530)
	stopPromptly(t, p)
}

// waitFull waits until the spool of sink holds more than bytes.
func waitFull(t *testing.T, p *Pipeline, sink string, bytes int64) {
	t.Helper()
	spool := func() *SpoolStatus {
		for _, m := range p.Status().Modules {
			if m.Name == sink && m.Spool != nil {
				return m.Spool
			}
		}
		return &SpoolStatus{}
	}
	waitfor.Until(t, 20*time.Second, func() bool { return spool().Bytes > bytes },
		func() string { return fmt.Sprintf("the spool of %s does not fill: %+v", sink, spool()) })
}

// stopPromptly stops p with a minute to do it and fails when it took more
// than a quarter of that: with the old wait, the sources' half of it.
func stopPromptly(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(t0); took > 15*time.Second {
		t.Fatalf("Stop took %v with the spool full: it waited out the sources' share of its deadline", took)
	}
}
