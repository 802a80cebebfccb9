package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestMemoryLimitPrecedence(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	for _, c := range []struct {
		flag       string
		config     int64
		want       int64
		wantFrom   string
		wantErrors bool
	}{
		{"", 0, DefaultMemoryLimit, "default", false},
		{"", 48 << 20, 48 << 20, "memory_limit", false},
		{"", -1, -1, "memory_limit", false},
		{"20MiB", 48 << 20, 20 << 20, "--memory-limit", false},
		{"off", 48 << 20, -1, "--memory-limit", false},
		{"lots", 0, 0, "", true},
		{"0", 0, 0, "", true},
	} {
		got, from, err := memoryLimit(c.flag, c.config)
		if (err != nil) != c.wantErrors || got != c.want || from != c.wantFrom {
			t.Errorf("memoryLimit(%q, %d) = %d, %q, %v; want %d, %q (error %v)", c.flag, c.config, got, from, err, c.want, c.wantFrom, c.wantErrors)
		}
	}
	// GOMEMLIMIT is the runtime's own setting, taken as it is over the config.
	t.Setenv("GOMEMLIMIT", "40MiB")
	if _, from, _ := memoryLimit("", 48<<20); from != "GOMEMLIMIT" {
		t.Errorf("with GOMEMLIMIT set, the limit came from %s", from)
	}
	if _, from, _ := memoryLimit("20MiB", 48<<20); from != "--memory-limit" {
		t.Errorf("with GOMEMLIMIT and the flag set, the limit came from %s", from)
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	applyMemoryLimit(24 << 20)
	if got := debug.SetMemoryLimit(-1); got != 24<<20 {
		t.Errorf("limit %d, want %d", got, 24<<20)
	}
	applyMemoryLimit(-1)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("off left the limit at %d", got)
	}
	if limitText(-1) != "off" || limitText(32<<20) != "32.0MiB" {
		t.Errorf("limitText: %q, %q", limitText(-1), limitText(32<<20))
	}
}

// TestRunRefusesBadRuntimeFlags: a bad --memory-limit or --procs stops
// `ferry run` with exit 2, naming the flag and the value.
func TestRunRefusesBadRuntimeFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ferry.yaml")
	yaml := "connectors:\n  gen: {type: generator, interval: 1h, tags: [{name: t}]}\n  out: {type: file, path: out.jsonl}\nroutes:\n  - {from: gen, to: out}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"--memory-limit", "lots"}, {"--procs", "many"}} {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), []string{"run", "-c", cfg, c[0], c[1], "--admin-addr", "off", "--data-dir", dir}, &out, &errb)
		if want := c[0] + ` "` + c[1] + `"`; code != 2 || !strings.Contains(errb.String(), want) {
			t.Errorf("%s %s: exit %d, stderr %q; want 2 and %s", c[0], c[1], code, errb.String(), want)
		}
	}
}

func TestNoHeapProfile(t *testing.T) {
	defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
	for _, c := range []struct {
		godebug string
		want    int
	}{{"", 0}, {"madvdontneed=1", 0}, {"memprofilerate=1", 4096}} {
		runtime.MemProfileRate = 4096
		t.Setenv("GODEBUG", c.godebug)
		noHeapProfile()
		if runtime.MemProfileRate != c.want {
			t.Errorf("GODEBUG=%q: MemProfileRate %d, want %d", c.godebug, runtime.MemProfileRate, c.want)
		}
	}
}
