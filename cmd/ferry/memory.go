package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// DefaultMemoryLimit is the soft limit on the memory the Go runtime manages
// (heap, goroutine stacks, GC metadata; not the binary's own pages) when
// neither --memory-limit, GOMEMLIMIT nor memory_limit: says otherwise.
//
// A gateway's working set is small and steady (batches in flight, buffers
// sized from use), so the limit is a backstop, not a target: below it the
// collector runs at GOGC's pace; near it, it collects sooner and returns
// freed pages to the OS at once, so a burst (a backlog draining, a reload)
// does not leave the process holding twice its live heap. It is soft: a
// live heap above it is not an error, the collector's share of the CPU is
// capped (at about half) rather than thrashing.
const DefaultMemoryLimit = 32 << 20

// memoryLimit decides the soft memory limit and where it came from. The
// most explicit wins: the flag, then GOMEMLIMIT (already applied by the
// runtime, so an operator's container setting is respected as it is), then
// the config, then the default. A negative limit means none.
func memoryLimit(flag string, fromConfig int64) (int64, string, error) {
	switch {
	case flag != "":
		n, err := parseLimit(flag)
		if err != nil {
			return 0, "", fmt.Errorf("--memory-limit %q is not a size such as 32MiB, or \"off\"", flag)
		}
		return n, "--memory-limit", nil
	case os.Getenv("GOMEMLIMIT") != "":
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT", nil // -1 reads it
	case fromConfig != 0:
		return fromConfig, "memory_limit", nil
	}
	return DefaultMemoryLimit, "default", nil
}

func parseLimit(s string) (int64, error) {
	if s == "off" {
		return -1, nil
	}
	n, err := conf.ParseSize(s)
	if err == nil && n <= 0 {
		err = fmt.Errorf("not positive")
	}
	return int64(n), err
}

// applyMemoryLimit sets the runtime's soft limit; a negative one lifts it.
func applyMemoryLimit(n int64) {
	if n < 0 {
		n = math.MaxInt64
	}
	debug.SetMemoryLimit(n)
}

// limitText is the limit as the log shows it.
func limitText(n int64) string {
	if n < 0 || n == math.MaxInt64 {
		return "off"
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}

// gogcText is GOGC as the runtime took it, for the start-up log.
func gogcText() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return "100"
}

// noHeapProfile stops the runtime sampling allocations for heap profiles.
// Nothing in ferry reads them, but the embedded NATS server links
// net/http/pprof, and with a heap profiler linked in the runtime walks the
// stack of one allocation in every 512 KiB and keeps a record per call
// site for good: work, heap and pages of the binary's function tables that
// nobody asked for. It runs first in main, as the runtime asks;
// GODEBUG=memprofilerate=N still turns profiling on for whoever wants one.
func noHeapProfile() {
	if !strings.Contains(os.Getenv("GODEBUG"), "memprofilerate=") {
		runtime.MemProfileRate = 0
	}
}
