package main

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/ferry-gateway/ferry/router"
)

// TestMain pins GOMAXPROCS through its variable, which `ferry run` takes
// as the operator's choice: the tests that run ferry in this process then
// leave the test binary's own parallelism alone.
func TestMain(m *testing.M) {
	if os.Getenv("GOMAXPROCS") == "" {
		os.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	}
	os.Exit(m.Run())
}

func TestProcsPrecedence(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	for _, c := range []struct {
		flag       string
		config     int
		want       int
		wantFrom   string
		wantErrors bool
	}{
		{"", 0, router.DefaultProcs, "default", false},
		{"", 3, 3, "procs", false},
		{"", -1, -1, "procs", false},
		{"2", 3, 2, "--procs", false},
		{"auto", 3, -1, "--procs", false},
		{"two", 0, 0, "", true},
		{"0", 0, 0, "", true},
	} {
		got, from, err := procs(c.flag, c.config)
		if (err != nil) != c.wantErrors || got != c.want || from != c.wantFrom {
			t.Errorf("procs(%q, %d) = %d, %q, %v; want %d, %q (error %v)", c.flag, c.config, got, from, err, c.want, c.wantFrom, c.wantErrors)
		}
	}
	t.Setenv("GOMAXPROCS", "3")
	if _, from, _ := procs("", 2); from != "GOMAXPROCS" {
		t.Errorf("with GOMAXPROCS set, procs came from %s", from)
	}
	if n, from, _ := procs("1", 2); from != "--procs" || n != 1 {
		t.Errorf("with GOMAXPROCS and the flag set: %d from %s", n, from)
	}
}

func TestApplyProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	if got := applyProcs(1); got != 1 {
		t.Errorf("applyProcs(1) = %d", got)
	}
	if got := applyProcs(-1); got < 1 || got > runtime.NumCPU() {
		t.Errorf("auto gave %d threads on %d CPUs", got, runtime.NumCPU())
	}
}
