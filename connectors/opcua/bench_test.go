package opcua

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// TestMain lets the benchmark run simulators in child processes (this test
// binary again), so that getrusage counts ferry's CPU alone.
func TestMain(m *testing.M) {
	if tags := os.Getenv("FERRY_OPCUA_SIM_TAGS"); tags != "" {
		runSimProcess(tags)
		return
	}
	os.Exit(m.Run())
}

func runSimProcess(tags string) {
	n, _ := strconv.Atoi(tags)
	every, _ := time.ParseDuration(os.Getenv("FERRY_OPCUA_SIM_INTERVAL"))
	s, err := simopcua.Start(context.Background(), simopcua.Config{Tags: n, PerLine: 1000, Interval: every})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(s.Endpoint())
	// Run until the parent closes stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = s.Close()
}

// startSimProcess starts a simulator child process and returns its endpoint.
func startSimProcess(b *testing.B, tags int, every time.Duration) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FERRY_OPCUA_SIM_TAGS="+strconv.Itoa(tags), "FERRY_OPCUA_SIM_INTERVAL="+every.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "opc.tcp://") {
		b.Fatalf("simulator process: %q %v", line, err)
	}
	return strings.TrimSpace(line)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSubscribe10k measures the connector on 10,000 monitored items
// that change every 100 ms (100,000 notifications/s), served by simulator
// processes (FERRY_OPCUA_BENCH_SIMS, default 1). The window is
// FERRY_OPCUA_BENCH_WINDOW (default 10s); b.N is not used. Sub-benchmark
// cpu acknowledges batches without decoding them, so the CPU is the
// connector's and the bus encoding's; latency decodes every batch and
// measures source timestamp → arrival on the bus.
func BenchmarkSubscribe10k(b *testing.B) {
	const items, every = 10_000, 100 * time.Millisecond
	sims := 1
	if v, err := strconv.Atoi(os.Getenv("FERRY_OPCUA_BENCH_SIMS")); err == nil && v > 0 {
		sims = v
	}
	window := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FERRY_OPCUA_BENCH_WINDOW")); err == nil {
		window = d
	}
	var endpoints []string
	for range sims {
		endpoints = append(endpoints, startSimProcess(b, items/sims, every))
	}
	for _, mode := range []string{"cpu", "latency"} {
		b.Run(mode, func(b *testing.B) {
			var rigs []*rig
			for _, ep := range endpoints {
				c := decode(b, fmt.Sprintf(`type: opcua
endpoint: %s
subscription: {publishing_interval: 100ms}
server_timestamp: true
browse:
  - root: "nsu=urn:ferry:sim:plant;s=Plant"
    include: "Line*/*"
`, ep))
				rigs = append(rigs, run(b, c))
			}
			var mu sync.Mutex
			var lat, own []time.Duration
			var records uint64
			measuring := false
			seen := map[string]bool{}
			ready := make(chan struct{})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, r := range rigs {
				wg.Add(1)
				go func(r *rig) {
					defer wg.Done()
					var batch bus.Batch
					var dec bus.Decoder
					for {
						select {
						case <-stop:
							return
						case m := <-r.Msgs:
							mu.Lock()
							if !measuring || mode == "latency" {
								now := time.Now().UnixNano()
								batch.Reset()
								if err := dec.DecodeMessage(m, &batch); err == nil {
									for _, rec := range batch.Records {
										if !measuring {
											if !seen[rec.Tag] {
												seen[rec.Tag] = true
												if len(seen) == items {
													close(ready)
												}
											}
											continue
										}
										lat = append(lat, time.Duration(now-rec.SourceTime))
										own = append(own, time.Duration(now-rec.IngestTime))
									}
									if measuring {
										records += uint64(len(batch.Records))
									}
								}
							}
							mu.Unlock()
							m.Ack()
						}
					}
				}(r)
			}
			select {
			case <-ready:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d items within 60s", len(seen), items)
			}
			before := make([]Stats, len(rigs))
			for i, r := range rigs {
				before[i] = r.c.Stats()
			}
			mu.Lock()
			measuring = true
			mu.Unlock()
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			var outstanding int64
			samples := 0
			for tick := time.NewTicker(100 * time.Millisecond); time.Since(t0) < window; <-tick.C {
				for _, r := range rigs {
					outstanding += r.c.Stats().PublishOutstanding
				}
				samples++
			}
			cpu, elapsed := cpuTime()-cpu0, time.Since(t0)
			b.StopTimer()
			close(stop)
			wg.Wait()
			var notifs, responses uint64
			for i, r := range rigs {
				st := r.c.Stats()
				notifs += st.Notifications - before[i].Notifications
				responses += st.PublishResponses - before[i].PublishResponses
			}
			rate := float64(notifs) / elapsed.Seconds()
			cores := cpu.Seconds() / elapsed.Seconds()
			b.ReportMetric(rate, "notifs/s")
			b.ReportMetric(cores, "cpu-cores")
			b.ReportMetric(cores/(rate/10_000), "cores-per-10k/s")
			b.ReportMetric(float64(notifs)/float64(max(responses, 1)), "notifs/response")
			b.ReportMetric(float64(outstanding)/float64(max(samples, 1)), "publish-outstanding")
			if mode == "latency" && len(lat) > 0 {
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
				sort.Slice(own, func(i, j int) bool { return own[i] < own[j] })
				b.ReportMetric(float64(own[len(own)*99/100].Microseconds())/1000, "in-ferry-p99-ms")
			}
		})
	}
}
