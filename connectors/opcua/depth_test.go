package opcua

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

func resultOf(err error) string { return command.NewResult(&command.Command{}, err).Status }

// TestEventsAndAlarm: a plain event and an alarm arrive as records, a
// where clause keeps the plain one from the alarm item, and the alarm is
// acknowledged and confirmed through write-back.
func TestEventsAndAlarm(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1})
	c := decode(t, config(s, fast+`
nodes:
  - {path: Plant/Setpoint, name: setpoint}
events:
  - {prefix: "ev/", fields: [ReceiveTime]}
  - node: "`+s.NodeIDURI(simopcua.BoilerPath)+`"
    prefix: "alarm/"
    types: [i=2915]
    min_severity: 500
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "connected", func(rec bus.Record) bool { return rec.Tag == "setpoint" })
	requireNoErr(t, s.FireEvent(simopcua.Event{Severity: 900, Message: "door open"}))
	s.SetAlarm(true, 800, "too hot")
	var plain, alarm *bus.Record
	r.until(t, 10*time.Second, "the event and the alarm", func(rec bus.Record) bool {
		switch {
		case rec.Tag == "ev/Plant/Boiler/BaseEventType" && plain == nil:
			plain = &rec
		case strings.HasPrefix(rec.Tag, "alarm/") && alarm == nil:
			alarm = &rec
		}
		return plain != nil && alarm != nil
	})
	if plain.Value != bus.String("door open") || plain.Attrs["severity"] != "900" || plain.Attrs["event_id"] == "" || plain.Attrs["ReceiveTime"] == "" {
		t.Errorf("plain event: %+v", *plain)
	}
	// The alarm item's first record is the condition: the plain event
	// (fired first, severity 900) did not pass its OfType clause.
	if alarm.Tag != "alarm/Plant/Boiler/HighTemp" || alarm.Value != bus.String("too hot") || alarm.Attrs["active"] != "true" ||
		alarm.Attrs["acked"] != "false" || alarm.Attrs["event_type"] != "i=2915" || alarm.Attrs["condition_id"] != s.NodeID(simopcua.AlarmPath) {
		t.Errorf("alarm: %+v", *alarm)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	requireNoErr(t, c.WriteTag(ctx, "plc", "alarm/Plant/Boiler/HighTemp/acknowledge", bus.String("seen it")))
	if a := s.Alarm(); !a.Acked || a.Comment != "seen it" || a.Confirmed {
		t.Fatalf("alarm after acknowledge: %+v", a)
	}
	r.until(t, 10*time.Second, "the acknowledged state", func(rec bus.Record) bool {
		return rec.Tag == "alarm/Plant/Boiler/HighTemp" && rec.Attrs["acked"] == "true"
	})
	// Again: the server says no (already acknowledged), so the command failed.
	err := c.WriteTag(ctx, "plc", "alarm/Plant/Boiler/HighTemp/acknowledge", bus.String("again"))
	if !errors.Is(err, ua.StatusBadConditionBranchAlreadyAcked) || resultOf(err) != command.StatusFailed {
		t.Errorf("second acknowledge: %v (%s)", err, resultOf(err))
	}
	requireNoErr(t, c.WriteTag(ctx, "plc", "alarm/Plant/Boiler/HighTemp/confirm", bus.String("fixed")))
	if a := s.Alarm(); !a.Confirmed {
		t.Errorf("alarm after confirm: %+v", a)
	}
	err = c.WriteTag(ctx, "plc", "alarm/Plant/Nothing/acknowledge", bus.String("x"))
	if !errors.Is(err, connectors.ErrUnknownTag) || resultOf(err) != command.StatusRefused {
		t.Errorf("acknowledge of an unknown condition: %v", err)
	}
}

// TestMethodCall: a method called through write-back with its arguments
// converted to the declared types, its outputs emitted, and the
// refused/failed split for arguments ferry cannot convert and ones the
// server rejects.
func TestMethodCall(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1})
	c := decode(t, config(s, fast+`
nodes:
  - {path: Plant/Setpoint, name: setpoint}
methods:
  - {path: Plant/Mixer/Mix, name: mixer/mix}
  - {id: "`+s.NodeIDURI(simopcua.MixPath)+`", object: "`+s.NodeIDURI(simopcua.MixerPath)+`", name: mix2}
  - {path: Plant/Mixer/Nope, name: nope}
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "connected", func(rec bus.Record) bool { return rec.Tag == "setpoint" })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// 4 is a JSON integer: converted to the declared UInt16.
	requireNoErr(t, c.WriteTag(ctx, "plc", "mixer/mix", bus.String("[2.5, 4]")))
	r.until(t, 10*time.Second, "the outputs", func(rec bus.Record) bool {
		return rec.Tag == "mixer/mix" && strings.HasPrefix(rec.Value.Str(), "[10,\"B") && strings.Contains(rec.Attrs["outputs"], `"Total":10`)
	})
	requireNoErr(t, c.WriteTag(ctx, "plc", "mix2", bus.String("[1, 3]")))
	for _, tc := range []struct {
		v    string
		want string
		in   string
	}{
		{"[1]", command.StatusRefused, "takes 2 argument(s)"},
		{"[1, 70000]", command.StatusRefused, "Seconds"},
		{"[-1, 3]", command.StatusFailed, "argument Ratio: StatusBadOutOfRange"},
	} {
		err := c.WriteTag(ctx, "plc", "mixer/mix", bus.String(tc.v))
		if resultOf(err) != tc.want || err == nil || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("call with %s: %v (%s), want %s mentioning %q", tc.v, err, resultOf(err), tc.want, tc.in)
		}
	}
	if err := c.WriteTag(ctx, "plc", "nope", bus.String("[]")); !errors.Is(err, ua.StatusBadNoMatch) {
		t.Errorf("a method that does not resolve: %v", err)
	}
	if n := s.Stats().MethodCalls; n != 3 {
		t.Errorf("the server saw %d calls, want 3 (refused ones never reach it)", n)
	}
}

// TestPerNodeSettings: a node's own settings reach the server in its
// monitored item and override the subscription's; the simulator honours
// the absolute deadband (its only filter), so a change inside it is not
// reported.
func TestPerNodeSettings(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1})
	c := decode(t, config(s, fast+`  queue_size: 2
nodes:
  - path: Plant/Setpoint
    name: setpoint
    sampling_interval: 250ms
    queue_size: 5
    discard_oldest: false
    deadband: {type: absolute, value: 1}
  - {path: Plant/Limit, name: limit}
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "connected", func(rec bus.Record) bool { return rec.Tag == "setpoint" })
	p, ok := s.RequestedParameters(simopcua.SetpointPath)
	if !ok || p.SamplingInterval != 250 || p.QueueSize != 5 || p.DiscardOldest {
		t.Fatalf("setpoint's monitoring parameters: %+v", p)
	}
	if f, ok := p.Filter.Value.(*ua.DataChangeFilter); !ok || f.DeadbandType != uint32(ua.DeadbandTypeAbsolute) || f.DeadbandValue != 1 {
		t.Errorf("setpoint's filter: %+v", p.Filter.Value)
	}
	if p, _ := s.RequestedParameters(simopcua.LimitPath); p == nil || p.QueueSize != 2 || !p.DiscardOldest || p.SamplingInterval != -1 {
		t.Errorf("limit keeps the subscription's settings: %+v", p)
	}
	requireNoErr(t, s.SetValue(simopcua.SetpointPath, 10.0))
	r.until(t, 10*time.Second, "10", func(rec bus.Record) bool { return rec.Tag == "setpoint" && rec.Value == bus.Double(10) })
	requireNoErr(t, s.SetValue(simopcua.SetpointPath, 10.5)) // inside the deadband
	requireNoErr(t, s.SetValue(simopcua.SetpointPath, 12.0))
	r.until(t, 10*time.Second, "12, and never 10.5", func(rec bus.Record) bool {
		if rec.Tag == "setpoint" && rec.Value == bus.Double(10.5) {
			t.Fatal("a change inside the deadband was reported")
		}
		return rec.Tag == "setpoint" && rec.Value == bus.Double(12)
	})
}

// TestUnitsFromServer: a node without a configured unit carries the
// server's EngineeringUnits; a configured unit wins; a node without the
// property has none.
func TestUnitsFromServer(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1})
	c := decode(t, config(s, fast+`
nodes:
  - {path: Plant/Setpoint, name: setpoint}
  - {path: Plant/Limit, name: limit, unit: K}
  - {id: "`+s.NodeIDURI(s.Tag(0))+`", name: v1}
`))
	r := run(t, c)
	got := map[string]string{}
	r.until(t, 10*time.Second, "a record of each", func(rec bus.Record) bool {
		got[rec.Tag] = rec.Unit
		return len(got) == 3
	})
	if got["setpoint"] != simopcua.Unit || got["limit"] != "K" || got["v1"] != "" {
		t.Errorf("units %v, want setpoint %s, limit K, v1 none", got, simopcua.Unit)
	}
	off := decode(t, config(s, fast+"units_from_server: false\nnodes: [{path: Plant/Setpoint, name: setpoint}]"))
	run(t, off).until(t, 10*time.Second, "no unit when asked", func(rec bus.Record) bool {
		if rec.Unit != "" {
			t.Fatalf("unit %q with units_from_server: false", rec.Unit)
		}
		return true
	})
}
