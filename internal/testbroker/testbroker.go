// Package testbroker starts a real mosquitto broker (Debian's package, which
// ./scripts/test installs) on a loopback port for integration tests.
package testbroker

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Path returns the mosquitto binary, or "" when it is not installed.
func Path() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	return ""
}

// Mosquitto starts mosquitto on 127.0.0.1 with anonymous access and returns
// its host:port. It is stopped when the test ends. A missing binary fails
// the test: the test command installs it, and a skipped broker test would
// hide exactly the integration it exists for.
func Mosquitto(t testing.TB) string {
	t.Helper()
	bin := Path()
	if bin == "" {
		t.Fatal("mosquitto is not installed; ./scripts/test installs it (apt-get install mosquitto)")
	}
	dir := t.TempDir()
	// mosquitto cannot bind port 0 and report it, so take a free port and
	// retry on the rare collision.
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		conf := filepath.Join(dir, "mosquitto.conf")
		text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nmax_inflight_messages 0\nmax_queued_messages 0\n", port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-c", conf)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start mosquitto: %v", err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			var log []string
			for sc.Scan() {
				log = append(log, sc.Text())
				if strings.Contains(sc.Text(), "running") || strings.Contains(sc.Text(), "Opening ipv4 listen socket") {
					select {
					case ready <- true:
					default:
					}
				}
			}
			select {
			case ready <- false:
			default:
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				t.Cleanup(func() { cancel(); _ = cmd.Wait() })
				return addr
			}
			select {
			case ok := <-ready:
				if !ok {
					deadline = time.Now() // exited: try another port
				}
			case <-time.After(20 * time.Millisecond):
			}
		}
		cancel()
		_ = cmd.Wait()
	}
	t.Fatal("mosquitto did not start")
	return ""
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
