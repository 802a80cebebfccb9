package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/ferry-gateway/ferry/router"
)

// DefaultProcs is how many threads run ferry's Go code at once
// (GOMAXPROCS) when neither --procs, GOMAXPROCS nor procs: says otherwise.
//
// A gateway's work arrives in small pieces (a poll's reply, a batch to
// publish, an acknowledgement) and waits on the network in between. With a
// second thread allowed, the runtime hands each piece between threads and
// wakes them to look for work, and on a small box that costs more than the
// work: at 10,000 values/s from Modbus or OPC UA to MQTT, one thread used
// a fifth less CPU than two (BENCHMARKS.md). One thread carries far more
// than a gateway sees (the router alone routes over a million records/s on
// it); blocking system calls (a spool's fsync) do not hold it, the runtime
// runs other goroutines on another thread meanwhile. Raise it (procs: 2, or
// auto) where one gateway does heavy parallel work: many TLS uplinks with
// compression, or the embedded NATS server under load.
const DefaultProcs = 1

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
	return DefaultProcs, "default", nil
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
