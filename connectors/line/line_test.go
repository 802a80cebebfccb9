package line

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "line", "README.md")
}

// decode reads a connector section the way the loader does: strictly, with
// defaults and validation, positions relative to "ferry.yaml".
func decode(text string) (*Line, conf.Errors) {
	src, err := conf.Parse("ferry.yaml", []byte(text))
	if err != nil {
		return nil, err.(conf.Errors)
	}
	l := &Line{}
	return l, connectors.Decode(src, src.Root, l, "connectors.feed")
}

// mustDecode decodes a config that must be valid.
func mustDecode(t testing.TB, text string) *Line {
	t.Helper()
	l, errs := decode(text)
	if len(errs) > 0 {
		t.Fatalf("config does not validate:\n%v\n%s", errs, text)
	}
	return l
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked")
	if err := os.Mkdir(locked, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, yaml string
		want       []string // "line:col: path: part of the message"
	}{
		{"no transport", "type: line\nparse: {format: kv}\n",
			[]string{"1:1: connectors.feed: no transport"}},
		{"several transports", "type: line\nlisten: 127.0.0.1:7000\nconnect: h:1\nfile: x.log\n",
			[]string{"3:10: connectors.feed.connect: only one of", "4:7: connectors.feed.file: only one of"}},
		{"bad listen", "type: line\nlisten: 7000\n", []string{"2:9: connectors.feed.listen: \"7000\" is not host:port"}},
		{"bad connect port", "type: line\nconnect: plc:99999\n", []string{"2:10: connectors.feed.connect: port \"99999\""}},
		{"connect without host", "type: line\nconnect: :7000\n", []string{"2:10: connectors.feed.connect: \":7000\" has no host"}},
		{"missing dir", "type: line\nfile: " + filepath.Join(dir, "nope", "m.log") + "\n",
			[]string{"2:7: connectors.feed.file: directory " + filepath.Join(dir, "nope") + " of"}},
		{"serial", "type: line\nserial: {device: '', baud: 9601, data_bits: 9, parity: X, stop_bits: 3}\n",
			[]string{"2:18: connectors.feed.serial.device: missing", "connectors.feed.serial.baud: 9601 is not a supported rate",
				"connectors.feed.serial.data_bits", "connectors.feed.serial.parity: \"X\" is not one of N", "connectors.feed.serial.stop_bits"}},
		{"bad parse", "type: line\nlisten: :0\nparse:\n  format: csv\n  value_type: numeric\n",
			[]string{"4:3: connectors.feed.parse.columns: csv needs columns", "5:15: connectors.feed.parse.value_type: \"numeric\" is not one of"}},
		{"bad regex", "type: line\nlisten: :0\nparse: {format: regex, pattern: '(unclosed'}\n",
			[]string{"3:33: connectors.feed.parse.pattern: does not compile"}},
		{"limits", "type: line\nlisten: :0\nmax_line: 8B\nbatch_size: -1\nstart_at: middle\n",
			[]string{"3:11: connectors.feed.max_line", "4:13: connectors.feed.batch_size", "5:11: connectors.feed.start_at: \"middle\" is not one of end, beginning"}},
		{"listener limits", "type: line\nlisten: :0\nidle_timeout: -1s\nevict_idle: -5s\n",
			[]string{"3:15: connectors.feed.idle_timeout: duration -1s is negative", "4:13: connectors.feed.evict_idle: duration -5s is negative"}},
		{"unknown key", "type: line\nlisten: :0\nport: 7\n", []string{"3:1: connectors.feed.port: unknown key \"port\""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs := decode(c.yaml)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			all := strings.Join(got, "\n")
			for _, w := range c.want {
				if w[0] >= '0' && w[0] <= '9' { // positioned: FILE:LINE:COL
					w = "ferry.yaml:" + w
				}
				if !strings.Contains(all, w) {
					t.Errorf("no error like %q in:\n%s", w, all)
				}
			}
			if len(errs) == 0 {
				t.Fatal("config validated")
			}
		})
	}
	t.Run("dir is a file", func(t *testing.T) {
		f := filepath.Join(dir, "plain")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, errs := decode("type: line\nfile: " + filepath.Join(f, "m.log") + "\n")
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "is not a directory") {
			t.Errorf("got %v, want a not-a-directory error", errs)
		}
	})
	if os.Geteuid() != 0 { // root reads every directory
		t.Run("unreadable dir", func(t *testing.T) {
			_, errs := decode("type: line\nfile: " + filepath.Join(locked, "m.log") + "\n")
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "not readable") {
				t.Errorf("got %v, want an unreadable-directory error", errs)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		for _, y := range []string{
			"type: line\nlisten: :0\n",
			"type: line\nconnect: localhost:7000\nparse: {format: csv, columns: [tag, value]}\n",
			"type: line\nserial: {device: /dev/ttyS0}\nparse: {format: raw, tag: weight}\n",
			"type: line\nfile: relative/machine.log\nparse: {format: regex, pattern: '(?P<tag>\\w+)=(?P<value>\\S+)'}\n",
		} {
			mustDecode(t, y)
		}
		// N, E and O stay strings in YAML 1.2 (yaml.v3): no quoting needed.
		l := mustDecode(t, "type: line\nserial: {device: /dev/ttyS0, parity: E, stop_bits: 2}\n")
		if s := l.Serial; s.Parity != "E" || s.Baud != 9600 || s.DataBits != 8 || s.StopBits != 2 {
			t.Errorf("serial settings %+v", *s)
		}
	})
}

// batchSink receives the batches an instance emits.
type batchSink interface{ add(b *bus.Batch) }

// collector gathers the records a source emits, across instances.
type collector struct {
	mu      sync.Mutex
	recs    []bus.Record
	batches int
	more    chan struct{} // signalled on every batch
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) add(b *bus.Batch) {
	c.mu.Lock()
	c.recs = append(c.recs, b.Records...)
	c.batches++
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() ([]bus.Record, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bus.Record(nil), c.recs...), c.batches
}

// wait returns once n records arrived, failing the test after within.
func (c *collector) wait(t testing.TB, n int, within time.Duration) []bus.Record {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		recs, _ := c.snapshot()
		if len(recs) >= n {
			return recs
		}
		select {
		case <-c.more:
		case <-deadline.C:
			t.Fatalf("%d records within %v, want %d; last: %v", len(recs), within, n, tail5(recs))
		}
	}
}

func tail5(recs []bus.Record) []string {
	var s []string
	for _, r := range recs[max(0, len(recs)-5):] {
		s = append(s, r.Device+"/"+r.Tag+"="+r.Value.String())
	}
	return s
}

// run is one started instance of the source on its own bus.
type run struct {
	l    *Line
	env  *connectors.Env
	ps   bus.PubSub
	done chan struct{}
	once sync.Once
}

// start starts l as module name with data dir data, feeding col. The
// instance stops at the end of the test unless stopped before.
func start(t testing.TB, l *Line, name, data string, col batchSink) *run {
	t.Helper()
	ps := bus.NewMemory(nil)
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: name, Type: "line", DataDir: data, Publisher: ps, Outputs: l.Outputs(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ps.Subscribe(context.Background(), name+"/out")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{l: l, env: env, ps: ps, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		var dec bus.Decoder
		for m := range msgs {
			var b bus.Batch
			if err := dec.DecodeMessage(m, &b); err != nil {
				t.Errorf("batch does not decode: %v", err)
			}
			col.add(&b)
			m.Ack()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Start(ctx, env); err != nil {
		_ = ps.Close()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop stops the instance gracefully: Stop, then the Env's goroutines, then
// the bus (everything emitted was acknowledged by the collector).
func (r *run) stop(t testing.TB) {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.l.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if err := r.env.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = r.ps.Close()
		<-r.done
	})
}

func (r *run) parseErrors() float64 {
	return testutil.ToFloat64(connectors.Collector(r.env.Metrics.Reg, parse.ErrorsMetric()).WithLabelValues(r.env.Name))
}

// waitPhase polls the state: a phase change has no event to wait on.
func waitPhase(t testing.TB, env *connectors.Env, p connectors.Phase) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for env.State().Phase() != p {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("phase %s, want %s (%+v)", env.State().Phase(), p, env.State().Snapshot())
		}
	}
}

// values returns the long values of recs, failing on other kinds.
func values(t testing.TB, recs []bus.Record) []int64 {
	t.Helper()
	out := make([]int64, len(recs))
	for i, r := range recs {
		if r.Value.Kind != bus.KindLong {
			t.Fatalf("record %d: %s=%v is a %s, want a long", i, r.Tag, r.Value, r.Value.Kind)
		}
		out[i] = r.Value.Long()
	}
	return out
}

// exactlyOnce checks that vals hold 1..n, each once.
func exactlyOnce(t testing.TB, vals []int64, n int) {
	t.Helper()
	seen := make(map[int64]int, len(vals))
	for _, v := range vals {
		seen[v]++
	}
	var missing, dup []string
	for i := int64(1); i <= int64(n); i++ {
		switch seen[i] {
		case 0:
			missing = append(missing, fmt.Sprint(i))
		case 1:
		default:
			dup = append(dup, fmt.Sprintf("%d×%d", i, seen[i]))
		}
		delete(seen, i)
	}
	for v := range seen {
		dup = append(dup, fmt.Sprintf("unexpected %d", v))
	}
	if len(missing) > 0 || len(dup) > 0 || len(vals) != n {
		t.Fatalf("%d values, want 1..%d once each; missing %v; extra %v", len(vals), n, missing, dup)
	}
}
