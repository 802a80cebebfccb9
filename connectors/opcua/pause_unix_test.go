//go:build unix

package opcua

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

	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

const pauseChildEnv = "FERRY_OPCUA_PAUSE_CHILD"

// TestOrderProcessPaused is the measurement of issue 12 as a test: the
// connector runs in a child process subscribed to a counter that rises
// every 100 ms, and the child is stopped for 350 ms twenty times
// (SIGSTOP/SIGCONT). On each SIGCONT the publish responses that queued
// up meanwhile reach several publish goroutines at once; the values the
// child emits must still rise strictly.
func TestOrderProcessPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("20 pauses of 350 ms")
	}
	s := sim(t, simopcua.Config{Tags: 1, PerLine: 1, Interval: 100 * time.Millisecond})
	cfg := counterConfig(s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPausedProcessChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), pauseChildEnv+"="+cfg)
	stdin, err := cmd.StdinPipe()
	requireNoErr(t, err)
	stdout, err := cmd.StdoutPipe()
	requireNoErr(t, err)
	cmd.Stderr = os.Stderr
	requireNoErr(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	values := make(chan float64, 1024)
	lines := make(chan string, 16)
	go func() {
		defer close(values)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "value "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err == nil {
					values <- f
				}
			} else if strings.HasPrefix(line, "stats ") {
				lines <- line
			}
		}
	}()
	c := &rising{t: t}
	take := func(within time.Duration) {
		t.Helper()
		tm := time.NewTimer(within)
		defer tm.Stop()
		for {
			select {
			case v, ok := <-values:
				if !ok {
					return
				}
				c.check(v)
			case <-tm.C:
				return
			}
		}
	}
	for deadline := time.Now().Add(20 * time.Second); c.n < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the child emitted no counter values")
		}
		take(100 * time.Millisecond)
	}
	for range 20 {
		requireNoErr(t, cmd.Process.Signal(syscall.SIGSTOP))
		time.Sleep(350 * time.Millisecond) // the fault: the process is stopped
		requireNoErr(t, cmd.Process.Signal(syscall.SIGCONT))
		take(150 * time.Millisecond)
	}
	before := c.n
	take(time.Second)
	if c.n == before {
		t.Error("no values after the last pause")
	}
	_ = stdin.Close() // the child prints its stats and exits
	take(5 * time.Second)
	select {
	case st := <-lines:
		t.Logf("%d values; child %s", c.n, st)
	case <-time.After(5 * time.Second):
		t.Errorf("the child did not report its stats")
	}
}

// TestPausedProcessChild is the child of TestOrderProcessPaused: it runs
// the connector and prints every counter value until stdin closes.
func TestPausedProcessChild(t *testing.T) {
	cfg := os.Getenv(pauseChildEnv)
	if cfg == "" {
		t.Skip("the child process of TestOrderProcessPaused")
	}
	r := run(t, decode(t, cfg))
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	out := bufio.NewWriter(os.Stdout)
	for {
		select {
		case <-done:
			fmt.Fprintf(out, "stats %+v\n", r.c.Stats())
			_ = out.Flush()
			return
		default:
		}
		b := r.next(t, 50*time.Millisecond)
		if b == nil {
			continue
		}
		for _, rec := range b.Records {
			if rec.Tag == "counter" {
				fmt.Fprintf(out, "value %v\n", rec.Value.Double())
			}
		}
		_ = out.Flush()
	}
}
