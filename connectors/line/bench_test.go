package line

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// The throughput of the line source: records/s parsed and emitted on the
// bus (decoded by the consumer, as a sink would).
//
//	go test -run '^$' -bench . -benchtime 1000000x ./connectors/line/

var benchFormats = []struct {
	name, parse, line string
	records           int // per line
}{
	{"kv", "parse: {format: kv}", "temp=21.5 rpm=1450 state=RUN", 3},
	{"csv", "parse: {format: csv, columns: [time, device, tag, value], time_format: unix_ms}", "1767322800000,press-1,temp,21.5", 1},
}

// counter counts records and signals when target is reached.
type counter struct {
	n, target atomic.Int64
	done      chan struct{}
	once      sync.Once
}

func newCounter(target int) *counter {
	c := &counter{done: make(chan struct{})}
	c.target.Store(int64(target))
	return c
}

func (c *counter) add(b *bus.Batch) {
	if c.n.Add(int64(len(b.Records))) >= c.target.Load() {
		c.once.Do(func() { close(c.done) })
	}
}

func (c *counter) wait(b *testing.B) {
	select {
	case <-c.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d records", c.n.Load(), c.target.Load())
	}
}

// linesFor returns n copies of line.
func linesFor(line string, n int) []byte {
	var buf bytes.Buffer
	buf.Grow(n * (len(line) + 1))
	for range n {
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func BenchmarkListener(b *testing.B) {
	for _, f := range benchFormats {
		for _, clients := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/clients=%d", f.name, clients), func(b *testing.B) {
				l := mustDecode(b, "type: line\nlisten: 127.0.0.1:0\n"+f.parse+"\n")
				lines := (b.N + f.records - 1) / f.records
				per := (lines + clients - 1) / clients
				payload := linesFor(f.line, per)
				cnt := newCounter(per * clients * f.records)
				r := start(b, l, "bench", b.TempDir(), cnt)
				b.ResetTimer()
				var wg sync.WaitGroup
				for range clients {
					wg.Go(func() {
						c, err := net.Dial("tcp", l.Addr().String())
						if err != nil {
							b.Error(err)
							return
						}
						defer c.Close()
						if _, err := c.Write(payload); err != nil {
							b.Error(err)
						}
					})
				}
				cnt.wait(b)
				b.StopTimer()
				wg.Wait()
				report(b, cnt, f.records)
				r.stop(b)
			})
		}
	}
}

func BenchmarkFile(b *testing.B) {
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "m.log")
			lines := (b.N + f.records - 1) / f.records
			if err := os.WriteFile(path, linesFor(f.line, lines), 0o644); err != nil {
				b.Fatal(err)
			}
			l := mustDecode(b, "type: line\nfile: "+path+"\nstart_at: beginning\n"+f.parse+"\n")
			cnt := newCounter(lines * f.records)
			b.ResetTimer()
			r := start(b, l, "bench", b.TempDir(), cnt)
			cnt.wait(b)
			b.StopTimer()
			report(b, cnt, f.records)
			r.stop(b)
		})
	}
}

func report(b *testing.B, c *counter, perLine int) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(c.n.Load())/s, "records/s")
	b.ReportMetric(float64(c.n.Load())/float64(perLine)/s, "lines/s")
}
