package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// ferryBinary builds cmd/ferry once for the crash tests.
func ferryBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/ferry")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ferry: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func status(addr string) (router.Status, error) {
	var s router.Status
	resp, err := http.Get("http://" + addr + "/api/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func findModule(s router.Status, name string) router.ModuleStatus {
	for _, m := range s.Modules {
		if m.Name == name {
			return m
		}
	}
	return router.ModuleStatus{}
}

// TestCrashLosesNothingAccepted runs ferry as a subprocess with its uplink
// cut, kills it with SIGKILL while records stream into the spool, restarts it
// with the link up, and checks that every record the spool had accepted
// before the kill reaches the cloud. A process crash leaves what was written
// in the page cache, so every fsync policy keeps it; what the policies differ
// in is power loss, which a test cannot produce (see the spool's doc).
func TestCrashLosesNothingAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a ferry process")
	}
	bin := ferryBinary(t)
	for _, policy := range []string{"always", "interval"} {
		t.Run(policy, func(t *testing.T) {
			r := newRig(t)
			c, link := r.cloud, r.link
			link.SetMode(flaky.Cut)

			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "ferry.yaml")
			write := func(interval string) {
				cfg := fmt.Sprintf(`
connectors:
  gen:
    type: generator
    interval: %s
    tags: [{name: t, signal: counter, count: 100}]
  cloud:
    type: mqtt
    url: tcp://%s
    ack_timeout: 1s
    reconnect_max: 200ms
    store_and_forward: {fsync: %s, window: 8}
routes:
  - {from: gen, to: cloud}
`, interval, link.Addr(), policy)
				if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			run := func() (*exec.Cmd, string) {
				admin := freeAddr(t)
				cmd := exec.Command(bin, "run", "-c", cfgFile, "--data-dir", filepath.Join(dir, "data"), "--admin-addr", admin, "--log-level", "error")
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
				return cmd, admin
			}

			write("2ms")
			first, admin := run()
			var accepted int64
			eventually(t, "records in the spool of the first process", func() bool {
				s, err := status(admin)
				if err != nil {
					return false
				}
				if sp := findModule(s, "cloud").Spool; sp != nil && sp.Records > 20000 {
					accepted = sp.Records // at least this many were in the spool
					return true
				}
				return false
			})
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_, _ = first.Process.Wait()

			write("1h") // the second process only drains
			link.SetMode(flaky.Up)
			run()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			rep, err := c.Wait(ctx, func(r cloud.Report) bool {
				s := r.Sources["gen"]
				if s.Unique == 0 || s.First != 0 {
					return false
				}
				// Every seq below accepted arrived: no gap starts below it.
				return s.Last >= uint64(accepted) && (len(s.Gaps) == 0 || s.Gaps[0].From >= uint64(accepted))
			})
			if err != nil {
				t.Fatalf("records accepted before SIGKILL missing at the cloud: %v", err)
			}
			s := rep.Sources["gen"]
			t.Logf("fsync %s: %d records in the spool at the kill, all arrived; cloud has %d unique, %d duplicates", policy, accepted, s.Unique, s.Duplicates)
		})
	}
}
