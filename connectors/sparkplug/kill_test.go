package sparkplug_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors/sparkplug"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// ferryBinary builds cmd/ferry once for the package's process tests.
func ferryBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-spb-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ferry")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, "../../cmd/ferry").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build ferry: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// TestNDeathOnKill kills a ferry process (SIGKILL: no NDEATH of its own
// is possible) and expects the broker to deliver the will: NDEATH with the
// bdSeq of the births.
func TestNDeathOnKill(t *testing.T) {
	bin := ferryBinary(t)
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			o := observe(t, addr, "spBv1.0/plant/#")
			dir := t.TempDir()
			cfg := filepath.Join(dir, "ferry.yaml")
			if err := os.WriteFile(cfg, fmt.Appendf(nil, `
connectors:
  gen:
    type: generator
    devices: 1
    interval: 50ms
    tags: [{name: parts, signal: counter}]
  spb:
    type: sparkplug
    url: tcp://%s
    group_id: plant
    edge_node_id: gw1
routes:
  - {from: gen, to: spb}
`, addr), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "run", "-c", cfg, "--data-dir", filepath.Join(dir, "data"), "--admin-addr", freeAddr(t), "--log-level", "error")
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
			nb := o.next(t, 30*time.Second, "NBIRTH", verb(sparkplug.NBIRTH))
			bd := metricByName(nb.p, "bdSeq").GetLongValue()
			o.next(t, 20*time.Second, "DDATA", verb(sparkplug.DDATA))
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_, _ = cmd.Process.Wait()
			nd := o.next(t, 30*time.Second, "NDEATH from the broker", verb(sparkplug.NDEATH))
			if got := metricByName(nd.p, "bdSeq").GetLongValue(); got != bd || nd.p.Seq != nil {
				t.Fatalf("NDEATH bdSeq %d seq %v, want %d and none", got, nd.p.Seq, bd)
			}
		})
	}
}
