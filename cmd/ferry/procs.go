package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/ferry-gateway/ferry/router"
)

// procs decides GOMAXPROCS and where it came from, as memoryLimit does the
// memory limit: the flag, then GOMAXPROCS (already applied by the
// runtime), then the config, then the default. -1 means the runtime's own
// choice (the CPUs of the machine or the container's CPU limit).
func procs(flag string, fromConfig int) (int, string, error) {
	switch {
	case flag != "":
		n, err := router.ParseProcs(flag)
		if err != nil {
			return 0, "", fmt.Errorf("--procs %w", err)
		}
		return n, "--procs", nil
	case os.Getenv("GOMAXPROCS") != "":
		return runtime.GOMAXPROCS(0), "GOMAXPROCS", nil
	case fromConfig != 0:
		return fromConfig, "procs", nil
	}
	return router.DefaultProcs, "default", nil
}

// applyProcs sets GOMAXPROCS and returns what the runtime now uses.
func applyProcs(n int) int {
	if n < 0 {
		runtime.SetDefaultGOMAXPROCS()
	} else {
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}
