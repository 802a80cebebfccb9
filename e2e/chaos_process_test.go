package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
)

// Pauses of the whole process, as a loaded box or a long GC makes them.
const (
	pauses   = 6
	pauseFor = 350 * time.Millisecond
	runFor   = 650 * time.Millisecond
)

// pausedProcess is the chaos case of a paused process. It has to be a
// process: only SIGSTOP stops every goroutine, timer and socket of ferry at
// once while the far side (the cloud's broker, here in the test) runs on,
// so that is what it uses. ferry runs the chaos pipeline's generators with
// two file sinks and an MQTT uplink spooled to sim/cloud; the process is
// stopped and continued several times, and the cloud must then have every
// (source, seq) the generators emitted, and the modules must be up. While
// it runs (between pauses) ferry keeps its rate: the records it delivered
// over the pauses' window, per second it was not stopped.
func pausedProcess(t *testing.T) {
	bin := ferryBinary(t)
	c, err := cloud.Start(t.Context(), cloud.Config{HTTPAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`connectors:
  g1: %s
  g2: %s
  file: {type: file, path: records.jsonl}
  copy: {type: file, path: copy.jsonl}
  cloud:
    type: mqtt
    url: tcp://%s
    ack_timeout: 1s
    reconnect_max: 200ms
    store_and_forward: {fsync: never, window: 8}
routes:
  - {from: g1, to: [file, copy, cloud]}
  - {from: g2, to: [file, copy, cloud]}
`, gens[0].yaml, gens[1].yaml, c.MQTTAddr())
	cfgFile := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	cmd := exec.Command(bin, "run", "-c", cfgFile, "--data-dir", filepath.Join(dir, "data"), "--admin-addr", admin, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	mods := []string{"g1", "g2", "file", "copy", "cloud"}
	var st router.Status
	eventually(t, "every module of the ferry process up, and records at the cloud", func() bool {
		st, err = status(admin)
		if err != nil {
			return false
		}
		for _, m := range mods {
			if findModule(st, m).Phase != connectors.PhaseUp {
				return false
			}
		}
		return c.Report().Unique > 0
	})

	before, t0 := st, time.Now()
	var paused time.Duration
	for range pauses {
		// The pauses are the fault itself, not waits for an event.
		stopped := time.Now()
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(pauseFor)
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		paused += time.Since(stopped)
		time.Sleep(runFor)
	}
	after, err := status(admin)
	if err != nil {
		t.Fatal(err)
	}
	running := time.Since(t0) - paused
	share := func(m string, rate float64) float64 {
		return float64(findModule(after, m).Out-findModule(before, m).Out) / running.Seconds() / rate
	}
	shares := map[string]float64{"g1": share("g1", gens[0].rate), "g2": share("g2", gens[1].rate), "file": share("file", genRate())}
	t.Logf("%d pauses of %v: per second not stopped, g1 %.1f%%, g2 %.1f%%, file %.1f%% of the configured rate", pauses, pauseFor, 100*shares["g1"], 100*shares["g2"], 100*shares["file"])
	for m, s := range shares {
		if s < minShare {
			t.Errorf("%s kept %.0f%% of its rate while running between pauses, want >= %.0f%%", m, 100*s, 100*minShare)
		}
	}

	// Every record emitted up to the last pause reaches the cloud: the
	// spool lost nothing it accepted, and seq has no hole.
	ctx, cancel := context.WithTimeout(t.Context(), healWithin)
	defer cancel()
	rep, err := c.Wait(ctx, func(r cloud.Report) bool {
		for _, g := range []string{"g1", "g2"} {
			s := r.Sources[g]
			if s.Unique == 0 || s.First != 0 || s.Last+1 < findModule(after, g).Out || len(s.Gaps) > 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("records lost across the pauses: %v; %+v", err, rep.Sources)
	}
	for _, g := range []string{"g1", "g2"} {
		s := rep.Sources[g]
		t.Logf("cloud, source %s: %d unique, %d duplicates, %d out of order, crash gaps %v", g, s.Unique, s.Duplicates, s.OutOfOrder, s.CrashGaps)
	}
	eventually(t, "every module up after the pauses", func() bool {
		st, err = status(admin)
		if err != nil {
			return false
		}
		for _, m := range mods {
			if findModule(st, m).Phase != connectors.PhaseUp {
				return false
			}
		}
		return true
	})
}
