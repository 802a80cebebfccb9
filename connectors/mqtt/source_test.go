package mqtt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/internal/testbroker"
)

// TestSubscribeParsesShimPayloads subscribes on mosquitto, has a "shim"
// publish JSON, CSV and raw payloads plus garbage, and checks the records
// and the parse-error count.
func TestSubscribeParsesShimPayloads(t *testing.T) {
	addr := testbroker.Mosquitto(t)
	for _, v := range Versions {
		t.Run("v"+v, func(t *testing.T) {
			m := newSink(t, "tcp://"+addr, v, func(c *Config) {
				c.BatchInterval = 0
				c.Subscribe = []Subscription{
					{Topic: "shim/json/#", QoS: 1, Parse: parse.Config{Format: "json", Device: "{topic.2}"}},
					{Topic: "shim/csv", QoS: 1, Parse: parse.Config{Format: "csv", Columns: []string{"device", "tag", "value"}}},
					{Topic: "shim/raw/+/+", QoS: 1, Parse: parse.Config{Format: "raw", Device: "{topic.2}", Tag: "{topic.3}"}},
				}
			})
			sinks++
			name := "src" + v
			env, msgs := startSource(t, m, name)
			waitPhase(t, env, connectors.PhaseUp)

			shim := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("shim" + v))
			if tok := shim.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			defer shim.Disconnect(100)
			for _, p := range []struct{ topic, payload string }{
				{"shim/json/m1", `{"tag":"temp","value":21.5}`},
				{"shim/json/m1", `{"tag":"temp",`}, // malformed: counted, skipped
				{"shim/csv", "m2,rpm,1450\nm2,rpm,1451"},
				{"shim/csv", "m2,too,many,columns"}, // malformed
				{"shim/raw/m3/state", "RUN"},
			} {
				if tok := shim.Publish(p.topic, 1, false, p.payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
			}
			want := map[string]string{"m1/temp": "21.5", "m2/rpm": "1451", "m3/state": "RUN"}
			got := map[string]string{}
			n := 0
			deadline := time.After(10 * time.Second)
			for n < 4 {
				select {
				case msg := <-msgs:
					var b bus.Batch
					if err := new(bus.Decoder).DecodeMessage(msg, &b); err != nil {
						t.Fatal(err)
					}
					msg.Ack()
					for _, r := range b.Records {
						got[r.Device+"/"+r.Tag] = r.Value.String()
						n++
					}
				case <-deadline:
					t.Fatalf("got %d records: %v", n, got)
				}
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			errs := connectors.Collector(env.Metrics.Reg, parse.ErrorsMetric()).WithLabelValues(name)
			if c := testutil.ToFloat64(errs); c != 2 {
				t.Errorf("ferry_parse_errors_total = %v, want 2", c)
			}
			if e := env.State().Snapshot().Errors; e != 2 {
				t.Errorf("%d errors counted, want 2 malformed payloads", e)
			}
		})
	}
}

// TestBurstBeyondReceiveWindow: a burst of 3,072 QoS 1 messages on an MQTT 5
// subscription all arrive from mochi (the broker ferry embeds). ferry does
// not announce a Receive Maximum: paho sizes a channel by it (65,535 when
// none, half a megabyte a connect), but with 1,024 announced mochi stranded
// a thousand of these messages (2,073 arrived), its send quota lost track
// of what was queued behind the window.
func TestBurstBeyondReceiveWindow(t *testing.T) {
	b := startCountingBroker(t)
	m := newSink(t, "tcp://"+b.addr, "5", func(c *Config) {
		c.Username = "burst"
		c.Subscribe = []Subscription{{Topic: "burst/#", QoS: 1, Parse: parse.Config{Format: "raw", Device: "d", Tag: "{topic.1}"}}}
	})
	env, msgs := startSource(t, m, "burst")
	waitPhase(t, env, connectors.PhaseUp)
	b.mu.Lock()
	got := b.recvMax["burst"]
	b.mu.Unlock()
	if got != 0 && got != 65535 {
		t.Fatalf("CONNECT announced Receive Maximum %d: mochi strands QoS 1 messages queued behind a small window", got)
	}

	const n = 3 * 1024
	for i := range n {
		if err := b.srv.Publish(fmt.Sprintf("burst/t%d", i), []byte("1"), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case msg := <-msgs:
			var batch bus.Batch
			if err := new(bus.Decoder).DecodeMessage(msg, &batch); err != nil {
				t.Fatal(err)
			}
			msg.Ack()
			for _, r := range batch.Records {
				seen[r.Tag] = true
			}
		case <-deadline:
			t.Fatalf("%d of %d messages arrived", len(seen), n)
		}
	}
}

// startSource starts m as the source name on an in-memory bus, up, and
// returns its Env and the messages it publishes; all stop when t ends.
func startSource(t *testing.T, m *MQTT, name string) (*connectors.Env, <-chan *message.Message) {
	t.Helper()
	ps := bus.NewMemory(nil)
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: name, Site: "s", DataDir: t.TempDir(), Publisher: ps, Outputs: m.Outputs()})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := ps.Subscribe(t.Context(), name+"/out")
	if err := m.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Close the bus first: a failed check may leave a batch
		// unacknowledged, and the emitter blocked on it.
		_ = ps.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
		if err := env.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	waitPhase(t, env, connectors.PhaseUp)
	return env, msgs
}
