package modbus

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mb "github.com/goburrow/modbus"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	sim "github.com/ferry-gateway/ferry/sim/modbus"
)

// Benchmarks of the connector against sim/modbus on loopback.
//
//	go test ./connectors/modbus -run '^$' -bench Cycle -benchtime 200x
//
// The simulators run in a child process (this test binary, started again
// with FERRY_MODBUS_BENCH_SIMS set), so the CPU figure is the connector's
// alone: getrusage of this process around the timed loop, divided by wall
// time, is the share of one core it used. One cycle polls every device once
// and waits until every device's batch was emitted (encoded and
// acknowledged on the in-memory bus).

const (
	benchDevices = 100
	benchRegs    = 100 // per device: 10,000 registers in all
)

func TestMain(m *testing.M) {
	if spec := os.Getenv("FERRY_MODBUS_BENCH_SIMS"); spec != "" {
		runBenchSims(spec)
		return
	}
	os.Exit(m.Run())
}

// runBenchSims is the child: "servers,units" simulators, each unit holding
// benchRegs registers; it prints one address per line and serves until
// its standard input closes.
func runBenchSims(spec string) {
	a, b, _ := strings.Cut(spec, ",")
	servers, _ := strconv.Atoi(a)
	units, _ := strconv.Atoi(b)
	for range servers {
		cfg := sim.Config{Tick: time.Hour}
		for u := 1; u <= units; u++ {
			cfg.Units = append(cfg.Units, sim.UnitConfig{ID: uint8(u)})
		}
		s, err := sim.Start(context.Background(), cfg)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for u := 1; u <= units; u++ {
			regs := make([]uint16, benchRegs)
			for i := range regs {
				regs[i] = uint16(u*1000 + i)
			}
			s.Unit(uint8(u)).HoldingRegisters().Set(0, regs...)
		}
		fmt.Println(s.Addr())
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// benchSims starts the child and returns the simulators' addresses.
var simPID int

// childCPU is the CPU time the simulators' process used so far.
func childCPU() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", simPID))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func benchSims(b *testing.B, servers, units int) []string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FERRY_MODBUS_BENCH_SIMS=%d,%d", servers, units))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	simPID = cmd.Process.Pid
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	var addrs []string
	for len(addrs) < servers && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "error") {
			b.Fatal(sc.Text())
		}
		addrs = append(addrs, sc.Text())
	}
	if len(addrs) < servers {
		b.Fatal("simulators did not start")
	}
	return addrs
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// signalPublisher takes batches off the connector as a sink that keeps up
// would: it signals each one and returns at once.
type signalPublisher struct{ got chan int }

func (p signalPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		p.got <- len(m.Payload)
	}
	return nil
}

func (p signalPublisher) Close() error { return nil }

// benchCycle polls every device once per iteration. viaBus publishes on
// ferry's in-memory bus, whose publish waits for the consumer's ack of each
// batch before the next one on the same topic goes out; without it the
// batches (still encoded by Env.Emit) go to signalPublisher, which measures
// the connector alone.
func benchCycle(b *testing.B, endpoints []string, unitsPer int, viaBus bool) {
	var cfg strings.Builder
	cfg.WriteString("type: modbus\npoll_interval: 1h\ntimeout: 2s\ndevices:\n")
	n := 0
	for _, ep := range endpoints {
		for u := 1; u <= unitsPer; u++ {
			fmt.Fprintf(&cfg, "  - name: dev%d\n    endpoint: tcp://%s\n    unit: %d\n    tags:\n", n, ep, u)
			for i := range benchRegs {
				fmt.Fprintf(&cfg, "      - {name: r%d, area: holding, address: %d}\n", i, i)
			}
			n++
		}
	}
	m := mustDecode(b, "", cfg.String())
	var wait func(check bool)
	var r *rig
	if viaBus {
		r = newRig(b, m, "")
		wait = func(check bool) {
			for range n {
				msg := <-r.Msgs
				if check {
					var batch bus.Batch
					if err := bus.DecodeBatch(msg.Payload, &batch); err != nil {
						b.Fatal(err)
					}
					if batch.Len() != benchRegs || batch.Records[0].Quality != bus.Good {
						b.Fatalf("batch of %d records, first %+v", batch.Len(), batch.Records[0])
					}
				}
				msg.Ack() // the consumer's decoding is not the connector's cost
			}
		}
	} else {
		pub := signalPublisher{got: make(chan int, n)}
		r = &rig{m: m, reg: prometheus.NewRegistry(), Runner: &conntest.Runner{}}
		env, err := connectors.NewEnv(connectors.EnvConfig{
			Name: "mb", Type: "modbus", DataDir: b.TempDir(), Publisher: pub,
			Metrics: connectors.NewMetrics(r.reg),
		})
		if err != nil {
			b.Fatal(err)
		}
		r.Env = env
		if err := m.Start(context.Background(), env); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = m.Stop(ctx)
			_ = env.Shutdown(ctx)
		})
		wait = func(bool) {
			for range n {
				if <-pub.got < 100 {
					b.Fatal("short batch")
				}
			}
		}
	}
	names := make([]string, 0, n)
	for name := range *r.m.devices.Load() {
		names = append(names, name)
	}
	cycle := func(check bool) {
		for _, name := range names {
			r.poke(name)
		}
		wait(check)
	}
	wait(true) // the first cycle connects
	cycle(true)
	if up := r.metric(b, "ferry_modbus_device_up", nil); up != float64(n) {
		b.Fatalf("%v of %d devices up", up, n)
	}
	reqs := func() float64 { return r.metric(b, "ferry_modbus_requests_total", nil) }
	req0 := reqs()
	cpu0, sim0 := cpuTime(), childCPU()
	b.ResetTimer()
	for range b.N {
		cycle(false)
	}
	b.StopTimer()
	cpu, simCPU := cpuTime()-cpu0, childCPU()-sim0
	wall := b.Elapsed()
	recs := float64(b.N * n * benchRegs)
	b.ReportMetric(float64(wall.Microseconds())/float64(b.N)/1000, "ms/cycle")
	b.ReportMetric((reqs()-req0)/float64(b.N), "requests/cycle")
	b.ReportMetric(recs/wall.Seconds(), "records/s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
	b.ReportMetric(simCPU.Seconds()/wall.Seconds(), "sim-cores")
}

// BenchmarkCycle: 10,000 holding registers on 100 devices, 100 each.
//
//   - endpoints=100: every device is its own endpoint (100 simulators, 100
//     connections), polled in parallel;
//   - units=100: 100 unit IDs behind one endpoint (one simulator, one
//     connection): requests are serialised on it;
//   - endpoints=10,units=10: in between.
func BenchmarkCycle(b *testing.B) {
	for _, tc := range []struct {
		servers, units int
	}{{benchDevices, 1}, {1, benchDevices}, {10, 10}} {
		for _, viaBus := range []bool{false, true} {
			name := fmt.Sprintf("endpoints=%d,units=%d,bus=%v", tc.servers, tc.units, viaBus)
			b.Run(name, func(b *testing.B) {
				benchCycle(b, benchSims(b, tc.servers, tc.units), tc.units, viaBus)
			})
		}
	}
}

// BenchmarkDecode is the connector's own work per response, without I/O:
// 100 registers of mixed types into records.
func BenchmarkDecode(b *testing.B) {
	var tags strings.Builder
	for i := range 25 {
		fmt.Fprintf(&tags, "      - {name: u%d, area: holding, address: %d}\n", i, i)
		fmt.Fprintf(&tags, "      - {name: f%d, area: holding, address: %d, type: float32, byte_order: CDAB}\n", i, 25+2*i)
		fmt.Fprintf(&tags, "      - {name: s%d, area: holding, address: %d, scale: 0.1}\n", i, 75+i)
	}
	m := mustDecode(b, "127.0.0.1:502", "type: modbus\ndevices:\n  - name: d\n    endpoint: tcp://{addr}\n    tags:\n"+tags.String())
	specs, _ := m.Config.build()
	d := &device{spec: specs[0], set: &specs[0].set, tags: make([]tagState, len(specs[0].tags))}
	plan := d.spec.plan(nil, nil)
	r := &plan[0]
	data := make([]byte, 2*r.count)
	d.batch.Records = make([]bus.Record, 0, len(d.tags))
	b.ReportAllocs()
	for b.Loop() {
		d.batch.Reset()
		d.decode(r, r.tags, data, 1)
	}
	b.ReportMetric(float64(b.N*r.count)/b.Elapsed().Seconds(), "registers/s")
}

// BenchmarkFloorOneConnection is the floor for the one-endpoint case:
// goburrow/modbus alone, one connection, 100-register reads back to back
// against the simulator in the child process.
func BenchmarkFloorOneConnection(b *testing.B) {
	addr := benchSims(b, 1, 1)[0]
	h := mb.NewTCPClientHandler(addr)
	h.SlaveId, h.Timeout = 1, 2*time.Second
	defer h.Close()
	c := mb.NewClient(h)
	if _, err := c.ReadHoldingRegisters(0, benchRegs); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := c.ReadHoldingRegisters(0, benchRegs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/request")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/b.Elapsed().Seconds(), "cores")
}

// BenchmarkSustained500k runs the poll loops as configured, 10,000
// registers every 20 ms (500,000 registers/s), for b.N cycles, with the
// batches going over the in-memory bus to a consumer that acknowledges
// them, and reports the share of a core the connector takes at that rate.
//
//	go test ./connectors/modbus -run '^$' -bench Sustained -benchtime 100x
func BenchmarkSustained500k(b *testing.B) {
	for _, tc := range []struct{ servers, units int }{{benchDevices, 1}, {1, benchDevices}} {
		b.Run(fmt.Sprintf("endpoints=%d,units=%d", tc.servers, tc.units), func(b *testing.B) {
			addrs := benchSims(b, tc.servers, tc.units)
			var cfg strings.Builder
			cfg.WriteString("type: modbus\npoll_interval: 20ms\ntimeout: 2s\ndevices:\n")
			n := 0
			for _, ep := range addrs {
				for u := 1; u <= tc.units; u++ {
					fmt.Fprintf(&cfg, "  - name: dev%d\n    endpoint: tcp://%s\n    unit: %d\n    tags:\n", n, ep, u)
					for i := range benchRegs {
						fmt.Fprintf(&cfg, "      - {name: r%d, area: holding, address: %d}\n", i, i)
					}
					n++
				}
			}
			r := newRig(b, mustDecode(b, "", cfg.String()), "")
			for range 2 * n { // warm up: connect, first cycles
				(<-r.Msgs).Ack()
			}
			cpu0, sim0 := cpuTime(), childCPU()
			b.ResetTimer()
			for range b.N * n {
				(<-r.Msgs).Ack()
			}
			b.StopTimer()
			wall := b.Elapsed()
			b.ReportMetric(float64(b.N*n*benchRegs)/wall.Seconds(), "registers/s")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/wall.Seconds(), "cores")
			b.ReportMetric((childCPU()-sim0).Seconds()/wall.Seconds(), "sim-cores")
		})
	}
}
