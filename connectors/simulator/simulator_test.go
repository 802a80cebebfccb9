package simulator

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
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
