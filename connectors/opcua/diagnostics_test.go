package opcua

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// TestDiagnostics: the status page's view of an OPC UA device against the
// sim — session, endpoint, security, subscriptions, a publish rate while
// values change, a message recovered by Republish, and the session down
// once the server is gone.
func TestDiagnostics(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1, PerLine: 1, Interval: 20 * time.Millisecond})
	c := decode(t, config(s, fastTop+`security: {policy: Basic256Sha256, mode: SignAndEncrypt, trust_on_first_use: true}
subscription:
  publishing_interval: 20ms
  keepalive_count: 5
  lifetime_count: 100
  watchdog: 2s
nodes:
  - {id: "`+s.NodeIDURI(s.Tag(0))+`", name: counter}
`))
	var dg connectors.Diagnoser = c
	r := run(t, c)
	diag := func() Diagnostics {
		t.Helper()
		m, ok := dg.Diagnostics().(map[string]Diagnostics)
		if !ok || len(m) != 1 {
			t.Fatalf("Diagnostics() = %#v, want one device", dg.Diagnostics())
		}
		return m["plc"]
	}
	r.until(t, 10*time.Second, "a value", func(rec bus.Record) bool { return rec.Tag == "counter" && rec.Quality == bus.Good })

	var d Diagnostics
	drain(t, r, 10*time.Second, "a publish rate", func() bool { d = diag(); return d.PublishRate > 0 })
	if d.Session != SessionOpen || d.Endpoint != s.Endpoint() || d.EndpointURL == "" || d.SessionsOpened != 1 {
		t.Errorf("session %q (opened %d), endpoint %q (picked %q); want open (1), %q", d.Session, d.SessionsOpened, d.Endpoint, d.EndpointURL, s.Endpoint())
	}
	if d.SecurityPolicy != "Basic256Sha256" || d.SecurityMode != "SignAndEncrypt" {
		t.Errorf("security %s/%s, want Basic256Sha256/SignAndEncrypt", d.SecurityPolicy, d.SecurityMode)
	}
	if d.Subscriptions != 1 || d.MonitoredItems != 1 || d.Mode != "subscribe" {
		t.Errorf("subscriptions %d, monitored items %d, mode %q; want 1, 1, subscribe", d.Subscriptions, d.MonitoredItems, d.Mode)
	}
	// One value every 20 ms: tens per second, never thousands.
	if d.PublishRate > 1000 || d.ResponseRate <= 0 {
		t.Errorf("publish rate %v/s, response rate %v/s", d.PublishRate, d.ResponseRate)
	}

	s.LosePublish(1)
	drain(t, r, 10*time.Second, "the lost message republished", func() bool { d = diag(); return d.Republished >= 1 || d.NotificationGaps > 0 })
	if d.Republished != 1 {
		t.Errorf("republished %d, want 1 (%+v, sim %+v)", d.Republished, d, s.Stats())
	}
	if d.NotificationGaps != 0 {
		t.Errorf("gaps %d, want 0", d.NotificationGaps)
	}
	raw, err := json.Marshal(dg.Diagnostics())
	requireNoErr(t, err)
	for _, key := range []string{`"session":"open"`, `"security_policy":"Basic256Sha256"`, `"publish_rate":`, `"republished":1`, `"notification_gaps":0`, `"subscriptions":1`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("JSON %s has no %s", raw, key)
		}
	}

	_ = s.Close()
	drain(t, r, 10*time.Second, "the session down", func() bool { d = diag(); return d.Session == SessionDown })
	if d.SecurityPolicy != "Basic256Sha256" || d.Reconnects == 0 {
		t.Errorf("down: policy %q (the last session's), reconnects %d", d.SecurityPolicy, d.Reconnects)
	}
}

// drain waits for cond while reading what the connector emits, so that a
// steady stream of values never blocks it.
func drain(t *testing.T, r *rig, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); r.next(t, 5*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}
