package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/internal/testbroker"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// BenchmarkOutputPath is issue 14's job: 1,000 tags every 100 ms (10,000
// values/s) from ferry's own simulators, published to mosquitto as JSON at
// QoS 1. Modbus polls 1,000 holding registers; OPC UA subscribes to 1,000
// nodes that change every 100 ms.
//
// ferry runs as a child process built with go build, so its CPU
// (/proc/PID/stat) and peak resident memory (VmHWM) are its own: the
// simulators, mosquitto and the subscriber that counts what arrives live
// elsewhere. Two binaries are compared in the same sitting, their runs
// alternated (old, new / new, old / …) so that load from other work on the
// machine falls on both alike, and each figure is the median of the runs:
//
//	FERRY_BENCH_FERRY      the binary under test (default: go build ./cmd/ferry)
//	FERRY_BENCH_BEFORE     the binary to compare with (none: no comparison)
//	FERRY_OUTPATH_RUNS     runs of each binary per scenario (default 3)
//	FERRY_OUTPATH_WINDOW   the measuring window of one run (default 10s)
//	FERRY_OUTPATH_FORMAT   the new binary's JSON format (default json-lines
//	                       where it validates, else json); the old one's is json
//	FERRY_OUTPATH_ENV      space-separated NAME=VALUE given to both ferry
//	                       processes alone (GOGC=50 GOMEMLIMIT=16MiB)
//	FERRY_OUTPATH_SMAPS    a directory: each run copies the ferry process's
//	                       /proc/PID/smaps there at the end of its window,
//	                       to see which mappings hold the resident memory
//
// ./bench/run builds both binaries (the before one from a git archive of
// the commit before issue 14) and runs
//
//	go test ./e2e -run '^$' -bench OutputPath -benchtime 1x
//
// Every run also checks that every value the source handed on reached the
// subscriber (the lost metric, which must be 0).
func BenchmarkOutputPath(b *testing.B) {
	bins := []opBinary{{name: "new", path: os.Getenv("FERRY_BENCH_FERRY")}}
	if bins[0].path == "" {
		bins[0].path = ferryBinary(b)
	}
	if p := os.Getenv("FERRY_BENCH_BEFORE"); p != "" {
		bins = append(bins, opBinary{name: "old", path: p})
	}
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("FERRY_OUTPATH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	window := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FERRY_OUTPATH_WINDOW")); err == nil && d > 0 {
		window = d
	}
	broker := testbroker.Mosquitto(b)
	for i := range bins {
		bins[i].format = opFormat(b, bins[i])
	}
	for _, scenario := range []string{"modbus", "opcua"} {
		b.Run(scenario, func(b *testing.B) {
			got := map[string][]opResult{}
			for round := range runs {
				order := slices.Clone(bins)
				if round%2 == 0 {
					slices.Reverse(order) // old first in even rounds
				}
				for _, bin := range order {
					r := opRun(b, scenario, bin, broker, window, fmt.Sprintf("%s%d%s", scenario, round, bin.name))
					b.Logf("%s %s (%s) run %d: %.3f ms CPU per 1k values, %.1f MB peak RSS (anon %.1f MB), %.1f B/value, %.0f values/s, %d lost",
						scenario, bin.name, bin.format, round+1, r.cpuPer1k, r.hwmMB, r.anonMB, r.bytesPerValue, r.rate, r.lost)
					got[bin.name] = append(got[bin.name], r)
				}
			}
			for _, bin := range bins {
				rs := got[bin.name]
				cpu := opStats(rs, func(r opResult) float64 { return r.cpuPer1k })
				hwm := opStats(rs, func(r opResult) float64 { return r.hwmMB })
				b.ReportMetric(cpu[1], bin.name+"-cpu-ms/1k-values")
				b.ReportMetric(cpu[0], bin.name+"-cpu-min")
				b.ReportMetric(cpu[2], bin.name+"-cpu-max")
				b.ReportMetric(hwm[1], bin.name+"-MB-peak-RSS")
				b.ReportMetric(hwm[0], bin.name+"-RSS-min")
				b.ReportMetric(hwm[2], bin.name+"-RSS-max")
				b.ReportMetric(opStats(rs, func(r opResult) float64 { return r.anonMB })[1], bin.name+"-MB-anon-RSS")
				b.ReportMetric(opStats(rs, func(r opResult) float64 { return r.bytesPerValue })[1], bin.name+"-B/value")
				b.ReportMetric(opStats(rs, func(r opResult) float64 { return r.rate })[1], bin.name+"-values/s")
				b.ReportMetric(opStats(rs, func(r opResult) float64 { return float64(r.lost) })[2], bin.name+"-lost")
			}
			if len(bins) == 2 {
				n := opStats(got["new"], func(r opResult) float64 { return r.cpuPer1k })[1]
				o := opStats(got["old"], func(r opResult) float64 { return r.cpuPer1k })[1]
				b.ReportMetric(n/o, "cpu-ratio")
				n = opStats(got["new"], func(r opResult) float64 { return r.hwmMB })[1]
				o = opStats(got["old"], func(r opResult) float64 { return r.hwmMB })[1]
				b.ReportMetric(n/o, "RSS-ratio")
			}
		})
	}
}

type opBinary struct{ name, path, format string }

type opResult struct {
	cpuPer1k      float64 // ms of CPU (user + system) per 1,000 values delivered
	hwmMB         float64 // VmHWM, 10^6 bytes
	anonMB        float64 // RssAnon at the end of the window: the heap's share
	bytesPerValue float64 // payload bytes per value
	rate          float64 // values/s delivered in the window
	lost          int64   // values the source handed on that never arrived
}

// opStats returns the minimum, median and maximum.
func opStats(rs []opResult, f func(opResult) float64) [3]float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return [3]float64{}
	}
	return [3]float64{v[0], v[len(v)/2], v[len(v)-1]}
}

// opFormat picks the JSON payload format bin accepts: the old binary only
// knows json (JSON lines); issue 14 renames that json-lines.
func opFormat(b *testing.B, bin opBinary) string {
	if bin.name == "old" {
		return "json"
	}
	if f := os.Getenv("FERRY_OUTPATH_FORMAT"); f != "" {
		return f
	}
	cfg := filepath.Join(b.TempDir(), "probe.yaml")
	text := "connectors:\n  gen: {type: generator, interval: 1h, tags: [{name: t}]}\n  cloud: {type: mqtt, url: tcp://127.0.0.1:1883, format: json-lines}\nroutes:\n  - {from: gen, to: cloud}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	if exec.Command(bin.path, "validate", "-c", cfg).Run() == nil {
		return "json-lines"
	}
	return "json"
}

func opRun(b *testing.B, scenario string, bin opBinary, broker string, window time.Duration, site string) opResult {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()

	var source string
	switch scenario {
	case "modbus":
		s, err := simmodbus.Start(ctx, simmodbus.Config{Tick: time.Hour, Units: []simmodbus.UnitConfig{{ID: 1}}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		regs := make([]uint16, 1000)
		for i := range regs {
			regs[i] = uint16(i * 37)
		}
		s.Unit(1).HoldingRegisters().Set(0, regs...)
		var tags strings.Builder
		for i := range 1000 {
			fmt.Fprintf(&tags, "          - {name: r%04d, area: holding, address: %d}\n", i, i)
		}
		source = fmt.Sprintf(`    type: modbus
    poll_interval: 100ms
    devices:
      - name: plc1
        endpoint: tcp://%s
        tags:
%s`, s.Addr(), tags.String())
	case "opcua":
		s, err := simopcua.Start(ctx, simopcua.Config{Tags: 1000, PerLine: 1000, Interval: 100 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		source = fmt.Sprintf(`    type: opcua
    endpoint: %s
    subscription: {publishing_interval: 100ms}
    browse:
      - root: "nsu=urn:ferry:sim:plant;s=Plant"
        include: "Line*/*"
`, s.Endpoint())
	}

	var values, payload atomic.Int64
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("count-" + site).SetCleanSession(true))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscriber connect: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("ferry/"+site+"/#", 1, func(_ paho.Client, m paho.Message) {
		values.Add(int64(opCount(m.Payload())))
		payload.Add(int64(len(m.Payload())))
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}

	admin := freeAddr(b)
	cfg := filepath.Join(dir, "ferry.yaml")
	text := fmt.Sprintf(`site: %s
data_dir: %s
admin: {addr: "%s"}
connectors:
  src:
%s  cloud:
    type: mqtt
    url: tcp://%s
    format: %s
routes:
  - {from: src, to: cloud}
`, site, filepath.Join(dir, "data"), admin, source, broker, bin.format)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	var logs opLog
	cmd := exec.Command(bin.path, "run", "-c", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("FERRY_OUTPATH_ENV"))...)
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid
	fail := func(format string, args ...any) {
		b.Helper()
		b.Fatalf("%s %s: %s\nferry's log:\n%s", scenario, bin.name, fmt.Sprintf(format, args...), logs.String())
	}

	// Warm up: the first values arrive, then a few seconds more so that
	// connections, caches and the heap reach their steady state.
	deadline := time.Now().Add(30 * time.Second)
	for values.Load() == 0 {
		if time.Now().After(deadline) {
			fail("no value reached the broker in 30 s")
		}
		select {
		case err := <-exited:
			fail("exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(3 * time.Second) // benchmark only: settle before measuring

	cpu0, v0, p0, t0 := opCPU(pid), values.Load(), payload.Load(), time.Now()
	time.Sleep(window) // benchmark only: the measuring window
	cpu1, v1, p1, t1 := opCPU(pid), values.Load(), payload.Load(), time.Now()
	hwm, anon := opStatus(pid, "VmHWM"), opStatus(pid, "RssAnon")
	if d := os.Getenv("FERRY_OUTPATH_SMAPS"); d != "" {
		if smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
			_ = os.WriteFile(filepath.Join(d, site+".smaps"), smaps, 0o644)
		}
	}
	if v1 == v0 {
		fail("no value delivered in the window")
	}

	// Every value the source handed on so far must reach the subscriber.
	produced, err := opMetric(admin, `ferry_records_out_total{module="src"}`)
	if err != nil {
		fail("metrics: %v", err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for values.Load() < produced && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	n := v1 - v0
	return opResult{
		cpuPer1k:      float64(cpu1-cpu0) / float64(time.Millisecond) / (float64(n) / 1000),
		hwmMB:         float64(hwm) / 1e6,
		anonMB:        float64(anon) / 1e6,
		bytesPerValue: float64(p1-p0) / float64(n),
		rate:          float64(n) / t1.Sub(t0).Seconds(),
		lost:          max(0, produced-values.Load()),
	}
}

// opCount is the number of records in one payload: the elements of a JSON
// array, else one per non-empty line (JSON lines, or a single object).
func opCount(p []byte) int {
	p = bytes.TrimSpace(p)
	if len(p) > 0 && p[0] == '[' {
		var a []json.RawMessage
		if json.Unmarshal(p, &a) != nil {
			return 0
		}
		return len(a)
	}
	n := 0
	for line := range bytes.SplitSeq(p, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
	}
	return n
}

// opCPU is the user + system CPU time of process pid so far.
func opCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// opStatus reads one "kB" field of /proc/PID/status, in bytes.
func opStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// opMetric reads one series from ferry's /metrics.
func opMetric(addr, series string) (int64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(v), err
		}
	}
	return 0, fmt.Errorf("no series %s", series)
}

// opLog keeps the child's stderr; a failure prints it while the copy may
// still be writing.
type opLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *opLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *opLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
