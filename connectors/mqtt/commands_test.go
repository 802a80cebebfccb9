package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/internal/testbroker"
)

// device is a write-back target for command tests: setpoint takes values
// up to 1000 (a larger one is refused, as a connector's own range check
// does), serial is read-only, locked is refused by the device itself,
// anything else is unknown.
type device struct {
	writes atomic.Int64
	mu     sync.Mutex
	last   bus.Value
}

func (d *device) write(_ context.Context, _, tag string, v bus.Value) error {
	switch tag {
	case "serial":
		return fmt.Errorf("holding 10: %w", connectors.ErrNotWritable)
	case "setpoint":
		if f, _ := v.Float(); f > 1000 {
			return fmt.Errorf("%w: value %v out of range 0..1000", command.ErrRefused, f)
		}
		d.writes.Add(1)
		d.mu.Lock()
		d.last = v
		d.mu.Unlock()
		return nil
	case "locked":
		return errors.New("write holding 7: exception 0x04 (server device failure)")
	}
	return connectors.ErrUnknownTag
}

// startCommandSink starts an uplink taking commands, with a device behind
// the pipeline's WriteTag and an event ring, and waits until it is up
// (subscribed).
func startCommandSink(t *testing.T, url, version string, d *device, mod func(*Config)) (*MQTT, *connectors.Env, *connectors.Events) {
	t.Helper()
	m := newSink(t, url, version, func(c *Config) {
		c.Commands = &Commands{Topic: "ferry/{site}/cmd/#"}
		if mod != nil {
			mod(c)
		}
	})
	sinks++
	events := connectors.NewEvents(0)
	env := startEnv(t, m, connectors.EnvConfig{Name: fmt.Sprintf("cmd%d", sinks), Site: "s1",
		DataDir: t.TempDir(), WriteTag: d.write, Events: events})
	waitPhase(t, env, connectors.PhaseUp)
	return m, env, events
}

// TestCommandsFromTheCloud sends commands through mosquitto, as a cloud
// application would, under both protocol versions: outcomes come back on
// the result topic, a repeated id is answered without a second write, and
// every command and result is an event.
func TestCommandsFromTheCloud(t *testing.T) {
	addr := testbroker.Mosquitto(t)
	for _, v := range Versions {
		t.Run("v"+v, func(t *testing.T) {
			d := &device{}
			_, _, events := startCommandSink(t, "tcp://"+addr, v, d, nil)
			cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("app-" + v))
			if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			defer cl.Disconnect(0)
			results := make(chan command.Result, 10)
			if tok := cl.Subscribe("ferry/s1/cmd-result/#", 1, func(_ paho.Client, m paho.Message) {
				var r command.Result
				if err := json.Unmarshal(m.Payload(), &r); err != nil {
					t.Errorf("result %s: %v", m.Payload(), err)
				}
				if want := "ferry/s1/cmd-result/" + r.Device + "/" + r.Tag; m.Topic() != want {
					t.Errorf("result on %s, want %s", m.Topic(), want)
				}
				results <- r
			}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			send := func(topic, payload string) command.Result {
				t.Helper()
				if tok := cl.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
				select {
				case r := <-results:
					return r
				case <-time.After(10 * time.Second):
					t.Fatalf("no result for %s %s", topic, payload)
				}
				return command.Result{}
			}
			if r := send("ferry/s1/cmd/press-1/setpoint", `{"id":"c1","value":230}`); r.Status != "ok" || r.ID != "c1" {
				t.Fatalf("write: %+v", r)
			}
			// The same command again (a QoS 1 redelivery looks just like
			// this): answered, not written.
			if r := send("ferry/s1/cmd/press-1/setpoint", `{"id":"c1","value":230}`); r.Status != "ok" || r.ID != "c1" {
				t.Fatalf("repeat: %+v", r)
			}
			if n := d.writes.Load(); n != 1 {
				t.Fatalf("device written %d times, want once", n)
			}
			// A bare JSON value is the value (issue 15).
			for _, c := range []struct {
				payload string
				want    bus.Value
			}{{"23.5", bus.Double(23.5)}, {"true", bus.Bool(true)}, {`"text"`, bus.String("text")}} {
				if r := send("ferry/s1/cmd/press-1/setpoint", c.payload); r.Status != "ok" || string(r.Value) != c.payload {
					t.Fatalf("bare %s: %+v", c.payload, r)
				}
				d.mu.Lock()
				got := d.last
				d.mu.Unlock()
				if got != c.want {
					t.Fatalf("bare %s: device got %v (%s), want %v", c.payload, got, got.Kind, c.want)
				}
			}
			for _, c := range []struct{ topic, payload, status, why string }{
				{"ferry/s1/cmd/press-1/serial", `{"value":"X"}`, "refused", "not writable"},
				{"ferry/s1/cmd/press-1/nosuch", `{"value":1}`, "refused", "unknown tag"},
				{"ferry/s1/cmd/press-1/setpoint", `{"value":5000}`, "refused", "out of range"},
				{"ferry/s1/cmd/press-1/setpoint", `5000`, "refused", "out of range"},
				{"ferry/s1/cmd/press-1/locked", `1`, "failed", "exception 0x04"},
				{"ferry/s1/cmd/press-1/setpoint", `{"value":1,"ts":"2020-01-01T00:00:00Z","ttl":"10s"}`, "refused", "expired"},
				{"ferry/s1/cmd/press-1/setpoint", `{"valu":1}`, "refused", "payload"},
			} {
				if r := send(c.topic, c.payload); r.Status != c.status || !strings.Contains(r.Error, c.why) {
					t.Errorf("%s: %+v, want %s (%s)", c.payload, r, c.status, c.why)
				}
			}
			if n := d.writes.Load(); n != 4 {
				t.Fatalf("a refused command reached the device: %d writes, want 4", n)
			}
			var received, answered int
			for _, ev := range events.Since(0) {
				if ev.Kind != connectors.EventCommand {
					continue
				}
				switch {
				case strings.HasPrefix(ev.Message, "command received"):
					received++
				case strings.HasPrefix(ev.Message, "command ok"), strings.HasPrefix(ev.Message, "command refused"), strings.HasPrefix(ev.Message, "command failed"):
					answered++
				}
			}
			if received != 12 || answered != 12 {
				t.Fatalf("events: %d commands received, %d answered, want 12 and 12", received, answered)
			}
		})
	}
}

// TestCommandResponseTopic: an MQTT 5 command with a response topic gets
// its result there, with its correlation data.
func TestCommandResponseTopic(t *testing.T) {
	addr := testbroker.Mosquitto(t)
	d := &device{}
	startCommandSink(t, "tcp://"+addr, "5", d, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cl, got := subscribe5(ctx, t, addr, "app5", "app/replies/#")
	if _, err := cl.Publish(ctx, &paho5.Publish{QoS: 1, Topic: "ferry/s1/cmd/press-2/setpoint", Payload: []byte(`{"id":"r1","value":7}`),
		Properties: &paho5.PublishProperties{ResponseTopic: "app/replies/42", CorrelationData: []byte("corr-42")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		var r command.Result
		if err := json.Unmarshal(p.Payload, &r); err != nil || r.Status != "ok" || r.ID != "r1" || r.Device != "press-2" {
			t.Fatalf("result %s: %v", p.Payload, err)
		}
		if p.Topic != "app/replies/42" || p.Properties == nil || string(p.Properties.CorrelationData) != "corr-42" {
			t.Fatalf("result on %s with %+v", p.Topic, p.Properties)
		}
	case <-ctx.Done():
		t.Fatal("no result on the response topic")
	}
}

func TestCommandsValidate(t *testing.T) {
	for _, c := range []struct {
		k    Commands
		want string
	}{
		{Commands{}, "commands.topic: missing"},
		{Commands{Topic: "ferry/cmd"}, "must end in /#"},
		{Commands{Topic: "ferry/#/x"}, "commands.topic"},
		{Commands{Topic: "ferry/cmd/#", QoS: 3}, "commands.qos"},
	} {
		k := c.k
		cfg := Config{URL: "tcp://127.0.0.1:1", Commands: &k}
		cfg.SetDefaults()
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.k, err, c.want)
		}
	}
	cfg := Config{URL: "tcp://127.0.0.1:1", Commands: &Commands{Topic: "ferry/{site}/cmd/#"}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil || cfg.Commands.Results != "ferry/{site}/cmd-result" {
		t.Fatalf("defaults: results %q, %v", cfg.Commands.Results, err)
	}
}
