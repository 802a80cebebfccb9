package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/internal/testpki"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "mqtt", "README.md")
}

func newSink(t *testing.T, url, version string, mod func(*Config)) *MQTT {
	t.Helper()
	m := &MQTT{Config: Config{URL: url, Version: version, AckTimeout: conf.Duration(2 * time.Second)}}
	if mod != nil {
		mod(&m.Config)
	}
	m.SetDefaults()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

var sinks int

func startSink(t *testing.T, m *MQTT) *connectors.Env {
	t.Helper()
	// A distinct module name per sink: the client ID derives from it, and two
	// clients with one ID take the session from each other (MQTT takeover).
	sinks++
	return startEnv(t, m, connectors.EnvConfig{Name: fmt.Sprintf("uplink%d", sinks), Site: "s1", DataDir: t.TempDir()})
}

// startEnv starts m in an Env made from cfg, both stopped when t ends.
func startEnv(t *testing.T, m *MQTT, cfg connectors.EnvConfig) *connectors.Env {
	t.Helper()
	env, err := connectors.NewEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
		_ = env.Shutdown(ctx)
	})
	return env
}

func startCloud(t *testing.T, tc *tls.Config) *cloud.Cloud {
	t.Helper()
	c, err := cloud.Start(t.Context(), cloud.Config{HTTPAddr: "off", MQTTTLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func batch(first uint64, n int) *bus.Batch {
	b := &bus.Batch{}
	now := time.Now().UnixNano()
	for i := range n {
		b.Records = append(b.Records, bus.Record{Source: "gen", Device: "press-" + string(rune('1'+i%2)), Tag: "t",
			Value: bus.Double(float64(i)), SourceTime: now, IngestTime: now, Seq: first + uint64(i)})
	}
	return b
}

func waitUnique(t *testing.T, c *cloud.Cloud, n uint64) cloud.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	r, err := c.Wait(ctx, func(r cloud.Report) bool { return r.Unique >= n })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	for _, v := range Versions {
		t.Run("v"+v, func(t *testing.T) {
			var c *cloud.Cloud
			conntest.Run(t, conntest.Features{Sink: true}, conntest.Harness{
				New: func(t *testing.T) connectors.Connector {
					c = startCloud(t, nil)
					return newSink(t, "tcp://"+c.MQTTAddr(), v, nil)
				},
				Delivered: func(t *testing.T, seqs []uint64) bool {
					r := c.Report().Sources["conntest"]
					return r.Unique == uint64(len(seqs)) && r.First == seqs[0] && len(r.Gaps) == 0
				},
			})
		})
	}
}

func TestTopicsAndFormats(t *testing.T) {
	c := startCloud(t, nil)
	for i, format := range Formats {
		topic := "ferry/{site}/{device}"
		if format == "json" {
			topic = "ferry/{site}/{device}/{tag}" // json needs a topic per tag
		}
		m := newSink(t, "tcp://"+c.MQTTAddr(), "5", func(c *Config) { c.Format = format; c.Topic = topic })
		startSink(t, m)
		if err := m.Write(t.Context(), batch(uint64(1+100*i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	r := waitUnique(t, c, uint64(10*len(Formats)))
	// Two devices → two topics, a message each, per format; json is a
	// message per record.
	if want := uint64(2*(len(Formats)-1) + 10); r.Batches != want {
		t.Fatalf("%d messages, want %d", r.Batches, want)
	}
}

// TestMosquitto runs the uplink against Debian's mosquitto for both
// protocol versions and checks what a subscriber receives.
func TestMosquitto(t *testing.T) {
	addr := testbroker.Mosquitto(t)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("checker"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect checker: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	var mu sync.Mutex
	seqs := map[uint64]bool{}
	got := make(chan struct{}, 100)
	tok := sub.Subscribe("ferry/#", 1, func(_ paho.Client, msg paho.Message) {
		var b bus.Batch
		if err := bus.DecodeBatch(msg.Payload(), &b); err != nil {
			t.Errorf("payload does not decode: %v", err)
			return
		}
		mu.Lock()
		for _, r := range b.Records {
			seqs[r.Seq] = true
		}
		mu.Unlock()
		got <- struct{}{}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	for i, v := range Versions {
		m := newSink(t, "tcp://"+addr, v, func(c *Config) { c.Topic = "ferry/{site}/{module}" })
		startSink(t, m)
		if err := m.Write(t.Context(), batch(uint64(i*100), 50)); err != nil {
			t.Fatalf("v%s: %v", v, err)
		}
	}
	for range 2 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("subscriber got nothing")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != 100 {
		t.Fatalf("%d distinct records at the subscriber, want 100", len(seqs))
	}
}

// TestLinkCutAndBlackhole sends through a flaky link: a cut makes writes
// wait and succeed after the link is back; a blackhole (TCP up, no answers)
// is detected by the missing PUBACK, the connection is remade, and the
// batch arrives. Nothing is lost either way. Under 3.1.1 the connection
// ferry drops must end like a lost one (paho does not report it).
func TestLinkCutAndBlackhole(t *testing.T) {
	for _, v := range Versions {
		t.Run("v"+v, func(t *testing.T) { testLinkCutAndBlackhole(t, v) })
	}
}

func testLinkCutAndBlackhole(t *testing.T, version string) {
	c := startCloud(t, nil)
	link, err := flaky.Start(t.Context(), flaky.Config{Target: c.MQTTAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	m := newSink(t, "tcp://"+link.Addr(), version, func(c *Config) { c.AckTimeout = conf.Duration(300 * time.Millisecond) })
	env := startSink(t, m)

	write := func(first uint64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		b := batch(first, 10)
		for { // what the runtime does: retry until accepted
			if err := m.Write(ctx, b); err == nil {
				return
			} else if ctx.Err() != nil {
				t.Fatalf("write never succeeded: %v", err)
			}
		}
	}
	write(0)
	link.SetMode(flaky.Cut)
	done := make(chan struct{})
	go func() { write(10); close(done) }()
	waitPhase(t, env, connectors.PhaseDown)
	link.SetMode(flaky.Up)
	<-done

	link.SetMode(flaky.Blackhole)
	done = make(chan struct{})
	go func() { write(20); close(done) }()
	waitPhase(t, env, connectors.PhaseDown) // no PUBACK: link dropped
	link.SetMode(flaky.Up)
	<-done

	r := waitUnique(t, c, 30)
	if s := r.Sources["gen"]; s.Unique != 30 || len(s.Gaps) != 0 {
		t.Fatalf("after cut and blackhole: %+v", s)
	}
	if !strings.Contains(env.State().Snapshot().LastError, "link") && !strings.Contains(env.State().Snapshot().LastError, "lost") {
		t.Logf("last error: %s", env.State().Snapshot().LastError)
	}
}

func waitPhase(t *testing.T, env *connectors.Env, p connectors.Phase) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for env.State().Phase() != p {
		if time.Now().After(deadline) {
			t.Fatalf("phase stayed %s, want %s", env.State().Phase(), p)
		}
		<-tick.C
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t)
	caPEM, serverCert := ca.WriteCA(dir), ca.Issue("cloud.test", x509.ExtKeyUsageServerAuth)
	c := startCloud(t, &tls.Config{Certificates: []tls.Certificate{serverCert}})
	for _, v := range Versions {
		m := newSink(t, "tls://"+c.MQTTAddr(), v, func(c *Config) {
			c.TLS.CAFile = caPEM
			c.TLS.ServerName = "cloud.test"
		})
		startSink(t, m)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := m.Write(ctx, batch(map[string]uint64{"5": 0, "3.1.1": 10}[v], 10)); err != nil {
			t.Fatalf("v%s over TLS: %v", v, err)
		}
		cancel()
	}
	waitUnique(t, c, 20)

	// A server name the certificate does not carry must not connect.
	m := newSink(t, "tls://"+c.MQTTAddr(), "5", func(c *Config) { c.TLS.CAFile = caPEM; c.TLS.ServerName = "other.test" })
	env := startSink(t, m)
	waitPhase(t, env, connectors.PhaseDown)
	if e := env.State().Snapshot().LastError; !strings.Contains(e, "certificate") {
		t.Fatalf("last error %q does not name the certificate problem", e)
	}
}

func TestValidate(t *testing.T) {
	src, err := conf.Parse("f.yaml", []byte(`type: mqtt
url: ftp://x:1
version: "4"
format: xml
topic: "a/{nope}/#"
ack_timeout: 1ms
tls:
  ca_file: /nonexistent/ca.pem
`))
	if err != nil {
		t.Fatal(err)
	}
	errs := connectors.Decode(src, src.Root, &MQTT{}, "connectors.up")
	text := errs.Error()
	for _, want := range []string{
		`f.yaml:2:6: connectors.up.url: scheme "ftp" is not one of`,
		`f.yaml:3:10: connectors.up.version: "4" is not one of 5, 3.1.1`,
		`f.yaml:4:9: connectors.up.format: "xml" is not one of avro, json-lines, json-array, json`,
		`f.yaml:5:8: connectors.up.topic:`,
		`f.yaml:6:14: connectors.up.ack_timeout:`,
		`f.yaml:8:12: connectors.up.tls.ca_file: stat /nonexistent/ca.pem`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}
