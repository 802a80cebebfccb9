package simulator

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "simulator", "README.md")
}

func TestRunsAndStops(t *testing.T) {
	s := &Simulator{Config: Config{
		Modbus: []ModbusConfig{{Addr: "127.0.0.1:0"}},
		Cloud:  &CloudConfig{MQTT: "127.0.0.1:0"},
	}}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "sim"})
	if err := s.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	p, err := flaky.Start(t.Context(), flaky.Config{Target: s.CloudSim().MQTTAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + p.Addr()).SetClientID("x"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("through the link: %v", tok.Error())
	}
	cl.Disconnect(0)
	if s.ModbusSims()[0].Addr() == "" {
		t.Fatal("no modbus address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := env.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var _ cloud.Report = s.CloudSim().Report()
}

func TestValidate(t *testing.T) {
	src, _ := conf.Parse("f.yaml", []byte("type: simulator\nmodbus: [{addr: nowhere}]\nlinks:\n  - {listen: 127.0.0.1:1, target: 127.0.0.1:2, schedule: [{after: 1s, mode: down}]}\n"))
	text := connectors.Decode(src, src.Root, &Simulator{}, "connectors.sim").Error()
	for _, want := range []string{
		`f.yaml:2:17: connectors.sim.modbus[0].addr: "nowhere" is not host:port`,
		`f.yaml:4:77: connectors.sim.links[0].schedule[0].mode: "down" is not one of up, cut, blackhole`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

// TestSimulatorsStartIndependently takes the Modbus simulator's port: the
// cloud must run anyway, the module must be down naming that address, and
// the Modbus simulator must start by itself once the port is free.
func TestSimulatorsStartIndependently(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	s := &Simulator{Config: Config{
		Modbus: []ModbusConfig{{Addr: addr}},
		Cloud:  &CloudConfig{MQTT: "127.0.0.1:0"},
	}}
	s.SetDefaults()
	env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "sim", Retry: connectors.Backoff{Min: 20 * time.Millisecond, Max: 50 * time.Millisecond}})
	if err := s.Start(t.Context(), env); err != nil {
		taken.Close()
		t.Fatalf("start failed as a whole: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
		_ = env.Shutdown(ctx)
	}()
	if s.CloudSim() == nil {
		t.Fatal("the cloud did not start because the modbus port was taken")
	}
	snap := env.State().Snapshot()
	if snap.Phase != connectors.PhaseDown || !strings.Contains(snap.LastError, "modbus simulator on "+addr) || !strings.Contains(snap.LastError, "address already in use") {
		t.Fatalf("state %s, last error %q: want down naming %s", snap.Phase, snap.LastError, addr)
	}
	taken.Close()
	waitfor.Until(t, 10*time.Second, func() bool {
		return len(s.ModbusSims()) == 1 && env.State().Phase() == connectors.PhaseUp
	}, func() string {
		return "modbus simulator did not start once its port was free: " + env.State().Snapshot().LastError
	})
}
