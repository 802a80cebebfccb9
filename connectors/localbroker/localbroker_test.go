package localbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "localbroker", "README.md")
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// start runs a broker with three users: dashboard may read plant/#, shim may
// write shim/#, nosy may read only other/#.
func start(t *testing.T, mod func(*Config)) (*Broker, *connectors.Env, bus.PubSub) {
	t.Helper()
	b := &Broker{Config: Config{
		Listeners: Listeners{TCP: "127.0.0.1:0"},
		Users: []User{
			{Name: "dashboard", PasswordHash: hash(t, "dash"), ACL: []ACL{{Filter: "plant/#", Access: "read"}}},
			{Name: "shim", PasswordHash: hash(t, "shim"), ACL: []ACL{{Filter: "shim/#", Access: "write"}}},
			{Name: "nosy", PasswordHash: hash(t, "nosy"), ACL: []ACL{{Filter: "other/#", Access: "read"}}},
		},
		Retain: true,
	}}
	if mod != nil {
		mod(&b.Config)
	}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := bus.NewMemory(nil)
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "local", Site: "plant", DataDir: t.TempDir(), Publisher: ps, Outputs: b.Outputs()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ps.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
		_ = env.Shutdown(ctx)
	})
	return b, env, ps
}

func mosquitto(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed; ./scripts/test installs mosquitto-clients", tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

func hostPort(addr string) []string {
	i := strings.LastIndexByte(addr, ':')
	return []string{"-h", addr[:i], "-p", addr[i+1:]}
}

func records(n int) *bus.Batch {
	b := conntest.SampleBatch(n)
	for i := range b.Records {
		b.Records[i].Device = "press-1"
		b.Records[i].Tag = "line1/t" + string(rune('a'+i))
	}
	return &b
}

func TestSubscribersReceiveRecordsRetainedAndACL(t *testing.T) {
	b, _, _ := start(t, nil)
	addr := b.Addr("tcp")
	if err := b.Write(t.Context(), records(3)); err != nil {
		t.Fatal(err)
	}
	// A late subscriber gets the retained last value of each tag.
	out, err := mosquitto(t, "mosquitto_sub", append(hostPort(addr), "-u", "dashboard", "-P", "dash", "-t", "plant/#", "-C", "3", "-W", "10", "-v")...)
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	for _, tag := range []string{"plant/press-1/line1/ta ", "plant/press-1/line1/tb ", "plant/press-1/line1/tc "} {
		if !strings.Contains(out, tag) {
			t.Errorf("retained %q not received:\n%s", tag, out)
		}
	}
	if !strings.Contains(out, `"quality":"GOOD"`) {
		t.Errorf("payload is not the record's JSON:\n%s", out)
	}

	// A user without read access receives nothing.
	out, _ = mosquitto(t, "mosquitto_sub", append(hostPort(addr), "-u", "nosy", "-P", "nosy", "-t", "plant/#", "-C", "1", "-W", "1")...)
	if strings.Contains(out, "plant") || strings.Contains(out, "{") {
		t.Fatalf("user without the ACL received data:\n%s", out)
	}
	// A wrong password is refused.
	out, err = mosquitto(t, "mosquitto_sub", append(hostPort(addr), "-u", "dashboard", "-P", "wrong", "-t", "plant/#", "-C", "1", "-W", "5")...)
	if err == nil || !strings.Contains(strings.ToLower(out), "not authori") && !strings.Contains(strings.ToLower(out), "refused") {
		t.Fatalf("wrong password: err %v, output %q", err, out)
	}
}

func TestGoClientLiveDelivery(t *testing.T) {
	b, _, _ := start(t, func(c *Config) { c.Retain = false })
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr("tcp")).SetClientID("go").SetUsername("dashboard").SetPassword("dash"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(0)
	got := make(chan string, 10)
	if tok := cl.Subscribe("plant/+/line1/#", 0, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if err := b.Write(t.Context(), records(2)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("live record not delivered")
		}
	}
}

func TestShimsPublishIn(t *testing.T) {
	b, _, ps := start(t, func(c *Config) {
		c.BatchInterval = conf.Duration(5 * time.Millisecond)
		c.Subscribe = []Subscription{
			{Topic: "shim/+/json", Parse: parse.Config{Format: "json", Device: "{topic.1}"}},
			{Topic: "shim/+/csv", Parse: parse.Config{Format: "csv", Columns: []string{"tag", "value"}, Device: "{topic.1}"}},
			{Topic: "shim/+/raw/+", Parse: parse.Config{Format: "raw", Device: "{topic.1}", Tag: "{topic.3}"}},
		}
	})
	msgs, _ := ps.Subscribe(t.Context(), "local/out")
	addr := b.Addr("tcp")
	for _, p := range []struct{ topic, payload string }{
		{"shim/m1/json", `{"tag":"temp","value":21.5}`},
		{"shim/m1/json", `not json`},
		{"shim/m2/csv", "rpm,1450"},
		{"shim/m3/raw/state", "RUN"},
	} {
		if out, err := mosquitto(t, "mosquitto_pub", append(hostPort(addr), "-u", "shim", "-P", "shim", "-t", p.topic, "-m", p.payload)...); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	// A shim may not publish outside its grant.
	_, _ = mosquitto(t, "mosquitto_pub", append(hostPort(addr), "-u", "shim", "-P", "shim", "-t", "plant/forged", "-m", "1")...)

	got := map[string]string{}
	deadline := time.After(10 * time.Second)
	for len(got) < 3 {
		select {
		case m := <-msgs:
			var batch bus.Batch
			if err := new(bus.Decoder).DecodeMessage(m, &batch); err != nil {
				t.Fatal(err)
			}
			m.Ack()
			for _, r := range batch.Records {
				got[r.Device+"/"+r.Tag] = r.Value.String()
			}
		case <-deadline:
			t.Fatalf("records from shims: %v", got)
		}
	}
	want := map[string]string{"m1/temp": "21.5", "m2/rpm": "1450", "m3/state": "RUN"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestValidate(t *testing.T) {
	src, _ := conf.Parse("f.yaml", []byte(`type: localbroker
listeners: {tcp: nowhere}
users:
  - {name: a, password_hash: plain, acl: [{filter: "a/#/b", access: all}]}
format: xml
qos: 2
max_packet_size: 100B
max_clients: -1
max_retained: -5
`))
	text := connectors.Decode(src, src.Root, &Broker{}, "connectors.lb").Error()
	for _, want := range []string{
		`f.yaml:2:18: connectors.lb.listeners.tcp: "nowhere" is not host:port`,
		`f.yaml:4:30: connectors.lb.users[0].password_hash: not a bcrypt hash`,
		`connectors.lb.users[0].acl[0].filter: topic filter "a/#/b": # must be the last level`,
		`connectors.lb.users[0].acl[0].access: "all" is not one of read, write, readwrite`,
		`f.yaml:5:9: connectors.lb.format: "xml" is not one of json, json-lines, json-array, avro`,
		`f.yaml:6:6: connectors.lb.qos: 2 is not 0 or 1`,
		`f.yaml:7:18: connectors.lb.max_packet_size: 100B is outside 1KiB..256MiB`,
		`f.yaml:8:14: connectors.lb.max_clients: must be at least 1, got -1`,
		`f.yaml:9:15: connectors.lb.max_retained: must be at least 1, got -5`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

func TestCommandsWriteBackAndRefusals(t *testing.T) {
	type write struct {
		device, tag string
		v           bus.Value
	}
	writes := make(chan write, 10)
	b := &Broker{Config: Config{
		Listeners: Listeners{TCP: "127.0.0.1:0"},
		Users: []User{
			{Name: "operator", PasswordHash: hash(t, "op"), ACL: []ACL{{Filter: "cmd/#", Access: "write"}, {Filter: "cmd-result/#", Access: "read"}}},
			{Name: "dashboard", PasswordHash: hash(t, "dash"), ACL: []ACL{{Filter: "plant/#", Access: "read"}}},
		},
	}}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "local", Site: "plant", Logger: slog.New(logs), WriteTag: func(_ context.Context, device, tag string, v bus.Value) error {
		switch tag {
		case "serial":
			return fmt.Errorf("holding 10: %w", connectors.ErrNotWritable)
		case "setpoint":
			// Like a connector's own range check: nothing is sent.
			if f, _ := v.Float(); f > 1000 {
				return fmt.Errorf("%w: value %v out of range 0..1000", command.ErrRefused, f)
			}
			writes <- write{device, tag, v}
			return nil
		case "locked":
			return errors.New("write holding 7: exception 0x04 (server device failure)") // the device said no
		}
		return connectors.ErrUnknownTag
	}})
	if err := b.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Stop(t.Context()); _ = env.Shutdown(t.Context()) }()
	addr := b.Addr("tcp")

	results := make(chan Result, 10)
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("op").SetUsername("operator").SetPassword("op"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(0)
	if tok := cl.Subscribe("cmd-result/#", 1, func(_ paho.Client, m paho.Message) {
		var r Result
		_ = json.Unmarshal(m.Payload(), &r)
		results <- r
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	send := func(user, pw, topic, payload string) Result {
		t.Helper()
		if out, err := mosquitto(t, "mosquitto_pub", append(hostPort(addr), "-u", user, "-P", pw, "-t", topic, "-m", payload)...); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
		select {
		case r := <-results:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for %s %s", topic, payload)
		}
		return Result{}
	}

	r := send("operator", "op", "cmd/press-1/setpoint", `{"id":"c1","value":230}`)
	if r.Status != "ok" || r.ID != "c1" {
		t.Fatalf("write: %+v", r)
	}
	if w := <-writes; w.device != "press-1" || w.tag != "setpoint" || w.v.Long() != 230 {
		t.Fatalf("writer got %+v", w)
	}
	// A bare JSON value is the value (issue 15).
	for _, c := range []struct {
		payload string
		want    bus.Value
	}{{"23.5", bus.Double(23.5)}, {"true", bus.Bool(true)}, {`"text"`, bus.String("text")}} {
		if r := send("operator", "op", "cmd/press-1/setpoint", c.payload); r.Status != "ok" || string(r.Value) != c.payload {
			t.Fatalf("bare %s: %+v", c.payload, r)
		}
		if w := <-writes; w.v != c.want {
			t.Fatalf("bare %s: writer got %v (%s), want %v", c.payload, w.v, w.v.Kind, c.want)
		}
	}
	for _, c := range []struct{ user, pw, topic, payload, status, why string }{
		{"operator", "op", "cmd/press-1/serial", `{"value":"X"}`, "refused", "not writable"},
		{"operator", "op", "cmd/press-1/nosuch", `{"value":1}`, "refused", "unknown tag"},
		{"operator", "op", "cmd/press-1/setpoint", `{"value":5000}`, "refused", "out of range"},
		{"operator", "op", "cmd/press-1/setpoint", `5000`, "refused", "out of range"},
		{"operator", "op", "cmd/press-1/locked", `1`, "failed", "exception 0x04"},
		{"operator", "op", "cmd/press-1/setpoint", `on`, "refused", "not JSON"},
		{"operator", "op", "cmd/press-1/setpoint", `{"value":1,"ts":"2020-01-01T00:00:00Z","ttl":"10s"}`, "refused", "expired"},
		{"operator", "op", "cmd/press-1/setpoint", `{"valu":1}`, "refused", "payload"},
		{"dashboard", "dash", "cmd/press-1/setpoint", `{"value":1}`, "refused", "may not write"},
	} {
		r := send(c.user, c.pw, c.topic, c.payload)
		if r.Status != c.status || !strings.Contains(r.Error, c.why) {
			t.Errorf("%s %s: %+v, want %s (%s)", c.user, c.payload, r, c.status, c.why)
		}
	}
	select {
	case w := <-writes:
		t.Fatalf("a refused command reached the device: %+v", w)
	default:
	}
	// Refusals, failures and an ACL denial are logged in words (issue 15:
	// the broker logged WARN lines with an empty message).
	logs.mu.Lock()
	defer logs.mu.Unlock()
	warned := 0
	for _, r := range logs.recs {
		if r.Level >= slog.LevelWarn {
			warned++
			if r.Message == "" {
				t.Errorf("WARN with an empty message: %v", r)
			}
		}
	}
	if warned == 0 {
		t.Error("no refusal or failure was logged")
	}
}
