package mqtt

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/testpki"
)

// fakeHub is the embedded broker (mochi) standing in for a cloud hub: a
// hook refuses what the real hub would (a username, client id or SAS
// token of the wrong form or signature; a client certificate missing;
// topics outside the device's own; payloads over the limit), and keeps
// what it saw.
type fakeHub struct {
	mochi.HookBase
	srv  *mochi.Server
	addr string

	// Azure: the device's identity and key.
	host, device string
	key          []byte
	// AWS: the certificate's common name a client must present, and the
	// payload limit.
	certCN     string
	maxPayload int

	mu       sync.Mutex
	tokens   []string // SAS tokens of accepted connections
	refusals []string // what the hub refused, and why
	d2c      []packets.Packet
}

func (h *fakeHub) ID() string { return "fake-hub" }

func (h *fakeHub) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnPublish
}

func (h *fakeHub) refuse(format string, args ...any) bool {
	h.mu.Lock()
	h.refusals = append(h.refusals, fmt.Sprintf(format, args...))
	h.mu.Unlock()
	return false
}

func (h *fakeHub) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	if h.certCN != "" {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
			return h.refuse("no client certificate")
		}
		if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != h.certCN {
			return h.refuse("certificate for %q", cn)
		}
		return true
	}
	if id := pk.Connect.ClientIdentifier; id != h.device {
		return h.refuse("client id %q", id)
	}
	if u, want := string(pk.Connect.Username), h.host+"/"+h.device+"/?api-version="; !strings.HasPrefix(u, want) {
		return h.refuse("username %q", u)
	}
	tok := string(pk.Connect.Password)
	rest, ok := strings.CutPrefix(tok, "SharedAccessSignature ")
	if !ok {
		return h.refuse("password is not a SAS token: %q", tok)
	}
	q, err := url.ParseQuery(rest)
	if err != nil {
		return h.refuse("token %q: %v", tok, err)
	}
	if q.Get("sr") != h.host+"/devices/"+h.device {
		return h.refuse("token for %q", q.Get("sr"))
	}
	se, err := strconv.ParseInt(q.Get("se"), 10, 64)
	if err != nil || time.Unix(se, 0).Before(time.Now()) {
		return h.refuse("token expired or no expiry: %q", q.Get("se"))
	}
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(url.QueryEscape(q.Get("sr")) + "\n" + q.Get("se")))
	if q.Get("sig") != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		return h.refuse("bad signature")
	}
	h.mu.Lock()
	h.tokens = append(h.tokens, tok)
	h.mu.Unlock()
	return true
}

func (h *fakeHub) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline || h.certCN != "" {
		return true
	}
	if write && strings.HasPrefix(topic, "devices/"+h.device+"/messages/events/") {
		return true
	}
	// mochi checks a subscription's filter, and each delivery's topic.
	if !write && strings.HasPrefix(topic, "devices/"+h.device+"/messages/devicebound/") {
		return true
	}
	// Direct methods: requests in, answers out.
	if !write && strings.HasPrefix(topic, "$iothub/methods/POST/") || write && strings.HasPrefix(topic, "$iothub/methods/res/") {
		return true
	}
	return h.refuse("%s on %s", map[bool]string{true: "publish", false: "subscribe"}[write], topic)
}

func (h *fakeHub) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if h.maxPayload > 0 && len(pk.Payload) > h.maxPayload {
		h.refuse("payload of %d bytes", len(pk.Payload))
		return pk, packets.ErrPacketTooLarge
	}
	h.mu.Lock()
	h.d2c = append(h.d2c, pk.Copy(false))
	h.mu.Unlock()
	return pk, nil
}

func (h *fakeHub) snapshot() (tokens, refusals []string, d2c []packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.tokens...), append([]string(nil), h.refusals...), append([]packets.Packet(nil), h.d2c...)
}

func startHub(t *testing.T, h *fakeHub, tc *tls.Config) {
	t.Helper()
	h.srv = mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := h.srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "hub", Address: "127.0.0.1:0", TLSConfig: tc})
	if err := h.srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.srv.Close() })
	h.addr = l.Address()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := pollUntil(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// startAzureHub starts the stand-in for an IoT Hub with device dev1 and
// returns it with the device's connection string.
func startAzureHub(t *testing.T) (*fakeHub, string) {
	key := []byte("0123456789abcdef0123456789abcdef")
	hub := &fakeHub{host: "hub.test.azure-devices.net", device: "dev1", key: key}
	startHub(t, hub, nil)
	return hub, "HostName=hub.test.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + base64.StdEncoding.EncodeToString(key)
}

// TestAzureIoTHubPreset: from a connection string alone the uplink signs
// in as IoT Hub wants, sends device-to-cloud messages with their property
// bag, renews its SAS token before it expires, and takes cloud-to-device
// messages as commands, answering on the events topic.
func TestAzureIoTHubPreset(t *testing.T) {
	hub, cs := startAzureHub(t)
	d := &device{}
	m, _, events := startCommandSink(t, "tcp://"+hub.addr, "", d, func(c *Config) {
		c.Commands = nil // the preset sets cloud-to-device
		c.Preset, c.ConnectionString = presetAzure, cs
		c.Format = "json-lines"
		c.TokenTTL = conf.Duration(3 * time.Second)
		c.Version = ""
		c.SetDefaults()
	})
	if m.Version != "3.1.1" || m.ClientID != "dev1" || m.Topic != "devices/dev1/messages/events/" {
		t.Fatalf("preset gave version %s, client id %s, topic %s", m.Version, m.ClientID, m.Topic)
	}
	if err := m.Write(t.Context(), batch(1, 20)); err != nil {
		t.Fatal(err)
	}
	_, refusals, d2c := hub.snapshot()
	if len(refusals) > 0 || len(d2c) != 1 {
		t.Fatalf("hub refused %q, took %d messages", refusals, len(d2c))
	}
	if want := "devices/dev1/messages/events/$.ct=" + url.QueryEscape(bus.JSONLinesShape.ContentType()) + "&$.ce=utf-8"; d2c[0].TopicName != want {
		t.Fatalf("d2c topic %s, want %s", d2c[0].TopicName, want)
	}

	// A cloud-to-device message: the topic ends in its property bag.
	results := make(chan command.Result, 2)
	if err := hub.srv.Subscribe("devices/dev1/messages/events/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		if strings.Contains(pk.TopicName, "ferry-kind=command-result") {
			var r command.Result
			_ = json.Unmarshal(pk.Payload, &r)
			results <- r
		}
	}); err != nil {
		t.Fatal(err)
	}
	c2d := "devices/dev1/messages/devicebound/%24.mid=9&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound"
	if err := hub.srv.Publish(c2d, []byte(`{"id":"m9","device":"press-1","tag":"setpoint","value":42}`), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.Status != "ok" || r.ID != "m9" || d.writes.Load() != 1 {
			t.Fatalf("result %+v, %d writes", r, d.writes.Load())
		}
	case <-time.After(10 * time.Second):
		_, refusals, d2c := hub.snapshot()
		for _, ev := range events.Since(0) {
			t.Logf("event %+v", ev)
		}
		t.Fatalf("no command result on the events topic; refusals %q, %d d2c", refusals, len(d2c))
	}

	// The token (3 s) is replaced at 80% of its life, before the hub
	// would refuse it, and data still flows on the new connection.
	waitFor(t, "a renewed SAS token", func() bool { tokens, _, _ := hub.snapshot(); return len(tokens) >= 2 })
	if err := m.Write(t.Context(), batch(21, 5)); err != nil {
		t.Fatal(err)
	}
	tokens, refusals, _ := hub.snapshot()
	if tokens[0] == tokens[1] || len(refusals) > 0 {
		t.Fatalf("tokens %q; refusals %q", tokens, refusals)
	}
}

// TestAzureDirectMethods: a direct method "write" is a command, answered
// on IoT Hub's response topic with the request id and a status (200 done,
// 400 refused, 500 failed on the device, 404 a method ferry does not
// serve), and a result body; the answer carries no property bag.
func TestAzureDirectMethods(t *testing.T) {
	hub, cs := startAzureHub(t)
	d := &device{}
	startCommandSink(t, "tcp://"+hub.addr, "", d, func(c *Config) {
		c.Commands = nil
		c.Preset, c.ConnectionString = presetAzure, cs
		c.Version = ""
		c.SetDefaults()
	})
	type answer struct {
		topic  string
		result command.Result
	}
	answers := make(chan answer, 8)
	if err := hub.srv.Subscribe("$iothub/methods/res/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		var r command.Result
		_ = json.Unmarshal(pk.Payload, &r)
		answers <- answer{pk.TopicName, r}
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, payload, status, result string
		writes                          int64
	}{
		{"write", `{"id":"a1","device":"press-1","tag":"setpoint","value":42}`, "200", command.StatusOK, 1},
		{"write", `{"id":"a2","device":"press-1","tag":"setpoint","value":5000}`, "400", command.StatusRefused, 1},
		{"write", `{"id":"a3","device":"press-1","tag":"locked","value":1}`, "500", command.StatusFailed, 1},
		{"reboot", `{}`, "404", command.StatusRefused, 1},
	} {
		rid := c.method + "-" + c.status
		if err := hub.srv.Publish("$iothub/methods/POST/"+c.method+"/?$rid="+rid, []byte(c.payload), false, 0); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-answers:
			if want := "$iothub/methods/res/" + c.status + "/?$rid=" + rid; a.topic != want || a.result.Status != c.result || d.writes.Load() != c.writes {
				t.Errorf("%s %s: answer on %s (want %s), result %+v, %d writes", c.method, c.payload, a.topic, want, a.result, d.writes.Load())
			}
		case <-time.After(10 * time.Second):
			_, refusals, _ := hub.snapshot()
			t.Fatalf("%s %s: no answer; hub refusals %q", c.method, c.payload, refusals)
		}
	}
	if _, refusals, _ := hub.snapshot(); len(refusals) > 0 {
		t.Errorf("hub refused %q", refusals)
	}
}

// TestAzureWrongKeyIsRefused: the stand-in really checks the signature.
func TestAzureWrongKeyIsRefused(t *testing.T) {
	hub := &fakeHub{host: "hub.test", device: "dev1", key: []byte("right key")}
	startHub(t, hub, nil)
	m := newSink(t, "tcp://"+hub.addr, "", func(c *Config) {
		c.Preset, c.Version = presetAzure, ""
		c.ConnectionString = "HostName=hub.test;DeviceId=dev1;SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("wrong key"))
	})
	env := startSink(t, m)
	waitPhase(t, env, connectors.PhaseDown)
	waitFor(t, "a refusal", func() bool { _, r, _ := hub.snapshot(); return len(r) > 0 })
	if _, r, _ := hub.snapshot(); r[0] != "bad signature" {
		t.Fatalf("refused for %q", r)
	}
}

// TestAWSIoTCorePreset: a client certificate signs in, and a batch larger
// than the payload limit arrives whole, in order, in messages under it.
func TestAWSIoTCorePreset(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t)
	caFile := ca.WriteCA(dir)
	certFile, keyFile := ca.WritePair(dir, "client", ca.Issue("thing-1", x509.ExtKeyUsageClientAuth))
	hub := &fakeHub{certCN: "thing-1", maxPayload: 4096}
	startHub(t, hub, &tls.Config{Certificates: []tls.Certificate{ca.Issue("cloud.test", x509.ExtKeyUsageServerAuth)}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	m := newSink(t, "mqtts://"+hub.addr, "5", func(c *Config) {
		c.Preset = presetAWS
		c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ServerName = caFile, certFile, keyFile, "cloud.test"
		c.MaxPayload = 4096
		c.Topic = "ferry/{site}/line"
	})
	startSink(t, m)
	if err := m.Write(t.Context(), batch(1, 2000)); err != nil {
		t.Fatal(err)
	}
	_, refusals, d2c := hub.snapshot()
	if len(refusals) > 0 {
		t.Fatalf("hub refused: %q", refusals)
	}
	var next uint64 = 1
	for _, pk := range d2c {
		var b bus.Batch
		if err := bus.DecodeBatch(pk.Payload, &b); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			if r.Seq != next {
				t.Fatalf("seq %d after %d", r.Seq, next-1)
			}
			next++
		}
	}
	if next != 2001 || len(d2c) < 2 {
		t.Fatalf("%d records in %d messages, want 2000 split", next-1, len(d2c))
	}
	t.Logf("2000 records in %d messages of at most 4096 bytes", len(d2c))
}

func TestPresetValidation(t *testing.T) {
	cs := "HostName=h;DeviceId=d;SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("k"))
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Preset: "gcp"}, `preset: "gcp" is not one of azure-iot-hub, aws-iot-core`},
		{Config{Preset: presetAzure, ConnectionString: "HostName=h;DeviceId=d"}, "missing SharedAccessKey"},
		{Config{Preset: presetAzure, ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=!!"}, "not base64"},
		{Config{Preset: presetAzure, ConnectionString: cs, Password: "x"}, "password: set by preset"},
		{Config{Preset: presetAzure, ConnectionString: cs, Version: "5"}, "IoT Hub speaks MQTT 3.1.1"},
		{Config{Preset: presetAzure, ConnectionString: cs, Topic: "other/"}, "topic: IoT Hub takes"},
		{Config{Preset: presetAWS, URL: "mqtts://x.iot.eu-west-1.amazonaws.com:8883"}, "set tls.cert_file and tls.key_file"},
		{Config{Preset: presetAWS, URL: "tcp://x:1883"}, "needs a TLS URL"},
		{Config{URL: "tcp://x:1", ConnectionString: cs}, "only with preset"},
	} {
		cfg := c.cfg
		cfg.SetDefaults()
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg := Config{Preset: presetAzure, ConnectionString: cs}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "mqtts://h:8883" || cfg.Username != "h/d/?api-version="+azureAPIVersion || cfg.MaxPayload != azureMaxMessage ||
		cfg.Commands.Topic != "devices/d/messages/devicebound/#" {
		t.Fatalf("azure defaults: %+v", cfg)
	}
	aws := Config{Preset: presetAWS}
	aws.SetDefaults()
	if aws.MaxPayload != awsMaxPayload {
		t.Fatalf("aws max_payload %d", aws.MaxPayload)
	}
}
