package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/internal/natstest"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/router"
)

// BenchmarkEndToEnd runs generator → router → spool → MQTT uplink to
// mosquitto on loopback at a fixed offered rate and reports the records/s
// delivered (PUBACKed), the CPU it cost per 10,000 records/s, and the
// process's resident memory. mosquitto runs in its own process, so the CPU
// and memory are ferry's. The nats cases put the bus on NATS JetStream
// (a server inside the benchmark process, so its CPU and memory count too).
//
//	go test ./e2e -run '^$' -bench EndToEnd -benchtime 1x
func BenchmarkEndToEnd(b *testing.B) {
	for _, kind := range []string{"memory", "nats"} {
		for _, rate := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/offered%dk", kind, rate/1000), func(b *testing.B) {
				endToEnd(b, kind, rate)
			})
		}
	}
}

func endToEnd(b *testing.B, kind string, rate int) {
	// As `ferry run` does by default.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(router.DefaultProcs))
	broker := testbroker.Mosquitto(b)
	busCfg := ""
	if kind == "nats" {
		busCfg = fmt.Sprintf("bus: {type: nats, url: %s, instance: bench}", natstest.Start(b).URL())
	}
	for i := 0; i < b.N; i++ {
		// devices × tags / interval = rate, in batches of 1000.
		p := pipeline(b, fmt.Sprintf(`
data_dir: %s
%s
connectors:
  gen:
    type: generator
    devices: %d
    interval: 100ms
    tags: [{name: t, signal: sine, count: 1000}]
  cloud:
    type: mqtt
    url: tcp://%s
    store_and_forward: {window: 16}
routes:
  - {from: gen, to: cloud}
`, b.TempDir(), busCfg, rate/10_000, broker))
		time.Sleep(2 * time.Second) // benchmark only: let it settle
		cpu0, t0, sent0 := cpuTime(), time.Now(), sent(p)
		time.Sleep(5 * time.Second) // benchmark only: the measuring window
		cpu1, t1, sent1 := cpuTime(), time.Now(), sent(p)
		rss := rssBytes()
		stop(b, p)
		secs := t1.Sub(t0).Seconds()
		got := float64(sent1-sent0) / secs
		cores := (cpu1 - cpu0).Seconds() / secs
		b.ReportMetric(got, "records/s")
		b.ReportMetric(100*cores/(got/10_000), "%core-per-10k/s")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-RSS")
	}
}

// sent is what the uplink has delivered so far.
func sent(p *router.Pipeline) uint64 { return module(p, "cloud").Out }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes reads VmRSS from /proc/self/status.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
