package line

import (
	"github.com/ferry-gateway/ferry/internal/ptytest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
)

// TestSerialConformance runs the suite over a pty pair: the connector opens
// the slave with goburrow/serial as it would /dev/ttyUSB0, the test writes
// the device's lines into the master.
func TestSerialConformance(t *testing.T) {
	var garbage atomic.Int32
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			master, slave := ptytest.Open(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Registered after openPTY's: runs first, so the writer has
			// stopped before the master closes.
			t.Cleanup(func() { close(stop); _ = master.Close(); wg.Wait() })
			wg.Go(func() { feedWriter(master, stop, &garbage) })
			return mustDecode(t, "type: line\nserial: {device: "+slave+", baud: 115200}\nmax_backoff: 100ms\n"+streamParse)
		},
		// No FailStart: a missing port is a source that is down and
		// retrying (TestSerialMissingPort), not a failed start.
		Malformed: func(*testing.T) { garbage.Add(1) },
	})
}

// TestSerialMissingPort: a port that cannot be opened is down with the
// reason, and the connector keeps retrying.
func TestSerialMissingPort(t *testing.T) {
	l := mustDecode(t, "type: line\nserial: {device: /dev/nonexistent-tty}\nmax_backoff: 50ms\n"+streamParse)
	r := start(t, l, "ser", t.TempDir(), newCollector())
	waitPhase(t, r.env, connectors.PhaseDown)
	if e := r.env.State().Snapshot().LastError; e == "" {
		t.Error("no last error")
	}
}
