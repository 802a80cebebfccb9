package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/connectors/localbroker"
	"github.com/ferry-gateway/ferry/connectors/simulator"
)

// TestWriteBackToModbus publishes a command with mosquitto_pub on the
// embedded broker; it must change the register in the simulated Modbus
// device, and the result topic must say so. A command for a read-only tag is
// refused and never reaches the device.
func TestWriteBackToModbus(t *testing.T) {
	modbusAddr, brokerAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`
data_dir: %s
connectors:
  sim:
    type: simulator
    modbus: [{addr: %s}]
  press:
    type: modbus
    devices:
      - name: press-7
        endpoint: tcp://%s
        poll_interval: 100ms
        tags:
          - {name: oven/setpoint, area: holding, address: 5, type: uint16, scale: 0.1, writable: true}
          - {name: line/status, area: holding, address: 4, type: uint16}
  local:
    type: localbroker
    listeners: {tcp: %s}
    allow_anonymous: true
routes:
  - {from: press, to: local}
`, t.TempDir(), modbusAddr, modbusAddr, brokerAddr)
	p := pipeline(t, cfg)
	defer stop(t, p)
	sim := p.Config().Module("sim").Connector.(*simulator.Simulator).ModbusSims()[0]
	host, port, _ := strings.Cut(brokerAddr, ":")

	// A Go subscriber for the results: its SUBACK says it is listening, which
	// mosquitto_sub cannot tell us.
	got := make(chan localbroker.Result, 4)
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("results"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(0)
	if tok := cl.Subscribe("cmd-result/#", 1, func(_ paho.Client, m paho.Message) {
		var r localbroker.Result
		if err := json.Unmarshal(m.Payload(), &r); err != nil {
			t.Errorf("result %q: %v", m.Payload(), err)
		}
		got <- r
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pub := func(topic, payload string) {
		if o, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-m", payload).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub (./scripts/test installs mosquitto-clients): %v %s", err, o)
		}
	}
	pub("cmd/press-7/oven/setpoint", `{"id":"w1","value":23.5}`)
	pub("cmd/press-7/line/status", `{"id":"w2","value":9}`)
	results := map[string]localbroker.Result{}
	for len(results) < 2 {
		select {
		case r := <-got:
			results[r.ID] = r
		case <-ctx.Done():
			t.Fatalf("results: %+v", results)
		}
	}
	if r := results["w1"]; r.Status != "ok" {
		t.Fatalf("setpoint write: %+v", r)
	}
	if got := sim.Unit(1).HoldingRegisters().Get(5, 1)[0]; got != 235 {
		t.Fatalf("register 5 = %d, want 235 (23.5 / scale 0.1)", got)
	}
	if r := results["w2"]; r.Status != "refused" || !strings.Contains(r.Error, "not writable") {
		t.Fatalf("read-only tag: %+v", r)
	}
	if got := sim.Unit(1).HoldingRegisters().Get(4, 1)[0]; got == 9 {
		t.Fatal("a refused command reached the device")
	}
}

// TestWriteBackToOPCUA does the same for a node of the simulated OPC UA
// server: the writable setpoint changes; the read-only limit answers with
// its Bad status and keeps its value.
func TestWriteBackToOPCUA(t *testing.T) {
	opcAddr, brokerAddr := freeAddr(t), freeAddr(t)
	p := pipeline(t, fmt.Sprintf(`
data_dir: %s
connectors:
  sim:
    type: simulator
    opcua: [{addr: %s, tags: 5}]
  line2:
    type: opcua
    endpoint: opc.tcp://%s
    device: line-2
    security: {policy: None, mode: None}
    nodes:
      - {id: "nsu=urn:ferry:sim:plant;s=Plant/Setpoint", name: setpoint}
      - {id: "nsu=urn:ferry:sim:plant;s=Plant/Limit", name: limit}
  local:
    type: localbroker
    listeners: {tcp: %s}
    allow_anonymous: true
routes:
  - {from: line2, to: local}
`, t.TempDir(), opcAddr, opcAddr, brokerAddr))
	defer stop(t, p)
	sim := p.Config().Module("sim").Connector.(*simulator.Simulator).OPCUASims()[0]
	eventually(t, "the OPC UA connector to be up", func() bool { return module(p, "line2").Phase == "up" })
	results := commandResults(t, brokerAddr, map[string]string{
		"cmd/line-2/setpoint": `{"id":"s","value":42.5}`,
		"cmd/line-2/limit":    `{"id":"l","value":1}`,
	})
	if r := results["s"]; r.Status != "ok" {
		t.Fatalf("setpoint: %+v", r)
	}
	if v, _, err := sim.Value("Plant/Setpoint"); err != nil || v != 42.5 {
		t.Fatalf("Plant/Setpoint = %v (%v), want 42.5", v, err)
	}
	if r := results["l"]; r.Status == "ok" || !strings.Contains(r.Error, "BadNotWritable") {
		t.Fatalf("read-only node: %+v", r)
	}
}

// commandResults publishes each command with mosquitto_pub and collects the
// results by id, through a Go subscriber whose SUBACK proves it listens.
func commandResults(t *testing.T, brokerAddr string, cmds map[string]string) map[string]localbroker.Result {
	t.Helper()
	host, port, _ := strings.Cut(brokerAddr, ":")
	got := make(chan localbroker.Result, len(cmds))
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("results2"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(0)
	if tok := cl.Subscribe("cmd-result/#", 1, func(_ paho.Client, m paho.Message) {
		var r localbroker.Result
		_ = json.Unmarshal(m.Payload(), &r)
		got <- r
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for topic, payload := range cmds {
		if o, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-m", payload).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, o)
		}
	}
	out := map[string]localbroker.Result{}
	for len(out) < len(cmds) {
		select {
		case r := <-got:
			out[r.ID] = r
		case <-ctx.Done():
			t.Fatalf("results: %+v", out)
		}
	}
	return out
}
