package opcua

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "opcua", "README.md")
}

func TestConformance(t *testing.T) {
	var s *simopcua.Server
	conntest.Run(t, conntest.Features{Source: true, FirstBatch: 15 * time.Second}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			s = sim(t, simopcua.Config{Tags: 20, Interval: 30 * time.Millisecond})
			return decode(t, config(s, fast+`
browse:
  - root: "`+s.NodeIDURI("Plant")+`"
    include: "Line*/**"
`))
		},
		// A configured certificate that does not exist: Start cannot run.
		FailStart: func(t *testing.T) connectors.Connector {
			return decode(t, `type: opcua
endpoint: opc.tcp://127.0.0.1:1
security: {certificate: /nonexistent/cert.der, private_key: /nonexistent/key.pem}
nodes: [{id: "i=85"}]
`)
		},
		Restart:   func(t *testing.T) { requireNoErr(t, s.Restart(t.Context())) },
		Malformed: func(t *testing.T) { s.MalformNext() },
	})
}

func requireNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSubscribe1000 subscribes to 1,000 variables of every type and checks
// each value and its kind, first the initial values, then one change.
func TestSubscribe1000(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 1000, PerLine: 250})
	c := decode(t, config(s, fastTop+"subscription:\n"+fastSub+`  max_items_per_subscription: 300
browse:
  - root: "`+s.NodeIDURI("Plant")+`"
    include: "Line*/*"
`))
	r := run(t, c)
	for gen := uint64(0); gen < 2; gen++ {
		if gen > 0 {
			s.Tick()
		}
		seen := map[string]bool{}
		r.until(t, 20*time.Second, "1000 values", func(rec bus.Record) bool {
			i := lineIndex(rec.Tag)
			if i < 0 || rec.Quality != bus.Good {
				return false
			}
			if want := expect(i, gen); rec.Value.Equal(want) {
				seen[rec.Tag] = true
				if rec.Device != "plc" || rec.SourceTime == 0 || rec.Attrs["server_ts"] == "" {
					t.Fatalf("record lacks device, source time or server_ts: %+v", rec)
				}
			} else if s.Generation() == gen && gen > 0 && !rec.Value.Equal(expect(i, gen-1)) {
				t.Fatalf("%s = %v (%s), want %v (%s)", rec.Tag, rec.Value, rec.Value.Kind, want, want.Kind)
			}
			return len(seen) == 1000
		})
	}
	st := c.Stats()
	if st.Subscriptions != 4 || st.MonitoredItems != 1000 {
		t.Errorf("subscriptions %d, items %d; want 4 and 1000 (300 per subscription)", st.Subscriptions, st.MonitoredItems)
	}
	if st.MaxPerResponse == 0 || st.Sessions != 1 {
		t.Errorf("stats %+v", st)
	}
}

// lineIndex maps Line01/V00001 to 0.
func lineIndex(tag string) int {
	i := strings.LastIndex(tag, "/V")
	if i < 0 {
		return -1
	}
	n := 0
	for _, ch := range tag[i+2:] {
		if ch < '0' || ch > '9' {
			return -1
		}
		n = n*10 + int(ch-'0')
	}
	return n - 1
}

func TestPoll(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 100})
	c := decode(t, config(s, fast+`
mode: poll
poll: {interval: 50ms}
browse:
  - root: "`+s.NodeIDURI("Plant")+`"
    include: "Line*/*"
`))
	r := run(t, c)
	b := r.next(t, 10*time.Second)
	if b == nil {
		t.Fatal("no batch")
	}
	if len(b.Records) != 100 {
		t.Fatalf("a poll cycle emitted %d records, want one batch of 100", len(b.Records))
	}
	for _, rec := range b.Records {
		if i := lineIndex(rec.Tag); !rec.Value.Equal(expect(i, 0)) || rec.Quality != bus.Good {
			t.Fatalf("%s = %v %v, want %v", rec.Tag, rec.Value, rec.Quality, expect(i, 0))
		}
	}
	// The simulator states MaxNodesPerRead 32: at least 4 reads a cycle.
	if reads := c.Stats().Reads; reads < 4 {
		t.Errorf("%d reads for 100 nodes, want at least 4 (MaxNodesPerRead 32)", reads)
	}
	s.Tick()
	r.until(t, 10*time.Second, "polled change", func(rec bus.Record) bool { return rec.Value.Equal(expect(lineIndex(rec.Tag), 1)) })
}

// TestBrowseAndTypes discovers nodes under a browse root, with depth and
// filters, and checks the type mapping of the special types.
func TestBrowseAndTypes(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 30, PerLine: 10})
	c := decode(t, config(s, fast+`
browse:
  - root_path: Plant        # depth 1: only the variables right under Plant
    depth: 1
    prefix: top/
  - root: "`+s.NodeIDURI("Plant")+`"
    depth: 2
    include: "Types/*"
    exclude: "Types/NodeId"
`))
	r := run(t, c)
	want := map[string]func(bus.Value) bool{
		"top/Setpoint":        func(v bus.Value) bool { return v.Equal(bus.Double(50)) },
		"top/Limit":           func(v bus.Value) bool { return v.Equal(bus.Double(120)) },
		"Types/ByteString":    func(v bus.Value) bool { return v.Kind == bus.KindBytes && v.Str() == "\xde\xad\x00" },
		"Types/LocalizedText": func(v bus.Value) bool { return v.Equal(bus.String("running 0")) },
		"Types/StatusCode":    func(v bus.Value) bool { return v.Equal(bus.Long(0x40000000)) },
		"Types/DoubleArray":   func(v bus.Value) bool { return v.Equal(bus.String("[1.5,2.5,0]")) },
		"Types/Range":         func(v bus.Value) bool { return v.Equal(bus.String(`{"High":100,"Low":0}`)) },
	}
	seen := map[string]bool{}
	r.until(t, 10*time.Second, "browsed nodes", func(rec bus.Record) bool {
		check, ok := want[rec.Tag]
		if !ok {
			t.Fatalf("unexpected tag %q (depth or filter not applied)", rec.Tag)
		}
		if !check(rec.Value) {
			t.Fatalf("%s = %v (%s)", rec.Tag, rec.Value, rec.Value.Kind)
		}
		seen[rec.Tag] = true
		return len(seen) == len(want)
	})
}

// TestSignAndEncryptTrust: an untrusted server certificate refuses the
// connection and lands in rejected/; moved into the trust list, the
// connector connects on its next attempt.
func TestSignAndEncryptTrust(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 5, Interval: 50 * time.Millisecond})
	c := decode(t, config(s, fast+`
security: {policy: Basic256Sha256, mode: SignAndEncrypt}
nodes:
  - {id: "`+s.NodeIDURI(s.Tag(0))+`", name: t0}
`))
	r := run(t, c)
	pki := filepath.Join(r.dir, "ua", "pki")
	// The folders exist from the first start on, so the README's
	// `mv rejected/… trusted/` lands in a folder, never on a file named
	// trusted.
	for _, d := range []string{"trusted", "rejected"} {
		if fi, err := os.Stat(filepath.Join(pki, d)); err != nil || !fi.IsDir() {
			t.Errorf("pki/%s is not a folder after Start: %v", d, err)
		}
	}
	var rejected []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); len(rejected) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no certificate in rejected/ (state %+v)", r.Env.State().Snapshot())
		}
		if b := r.next(t, 50*time.Millisecond); b != nil {
			t.Fatalf("data from an untrusted server: %+v", b.Records[0])
		}
		rejected, _ = os.ReadDir(filepath.Join(pki, "rejected"))
	}
	tp := Thumbprint(s.Certificate())
	st := r.Env.State().Snapshot()
	for _, want := range []string{"not trusted", "ferry trust accept " + tp[:16], filepath.Join(pki, "trusted") + string(filepath.Separator)} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last error %q does not say %q", st.LastError, want)
		}
	}
	if _, err := os.Stat(filepath.Join(pki, "own", "cert.der")); err != nil {
		t.Errorf("no generated application certificate: %v", err)
	}
	list, err := ListCertificates(filepath.Join(pki, "rejected"))
	requireNoErr(t, err)
	if len(list) != 1 || list[0].Thumbprint != tp || list[0].URI != "urn:ferry:sim:opcua" {
		t.Fatalf("rejected certificates: %+v, want the sim's %s", list, tp)
	}
	if _, err := TrustRejected(pki, tp[:4]); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("a 4-digit thumbprint was accepted: %v", err)
	}
	got, err := TrustRejected(pki, strings.ToUpper(tp[:16]))
	requireNoErr(t, err)
	if got.Path != filepath.Join(pki, "trusted", filepath.Base(list[0].Path)) {
		t.Errorf("trusted certificate at %s", got.Path)
	}
	r.until(t, 10*time.Second, "data after trusting", func(rec bus.Record) bool { return rec.Tag == "t0" && rec.Quality == bus.Good })
}

func TestSecurityPolicies(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 5})
	for _, pm := range [][2]string{
		{"Basic256Sha256", "Sign"}, {"Basic256Sha256", "SignAndEncrypt"},
		{"Aes128_Sha256_RsaOaep", "SignAndEncrypt"}, {"Aes256_Sha256_RsaPss", "SignAndEncrypt"}, {"auto", "SignAndEncrypt"},
	} {
		t.Run(pm[0]+"/"+pm[1], func(t *testing.T) {
			c := decode(t, config(s, fast+`
security: {policy: `+pm[0]+`, mode: `+pm[1]+`, trust_on_first_use: true}
nodes:
  - {id: "`+s.NodeID(s.Tag(1))+`", name: t1}
`))
			r := run(t, c)
			r.until(t, 10*time.Second, "data", func(rec bus.Record) bool { return rec.Tag == "t1" && rec.Value.Equal(expect(1, 0)) })
			trusted, _ := os.ReadDir(filepath.Join(r.dir, "ua", "pki", "trusted"))
			if len(trusted) != 1 {
				t.Errorf("trust on first use saved %d certificates", len(trusted))
			}
		})
	}
}

func TestCertificateIdentity(t *testing.T) {
	user, err := simopcua.NewCertificate("urn:test:operator", "operator")
	requireNoErr(t, err)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "user.der"), filepath.Join(dir, "user.pem")
	requireNoErr(t, os.WriteFile(certPath, user.DER, 0o600))
	requireNoErr(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(user.Key)}), 0o600))
	s := sim(t, simopcua.Config{Tags: 5, UserCertificates: [][]byte{user.DER}, DenyAnonymous: true})
	c := decode(t, config(s, fast+`
security: {policy: Basic256Sha256, mode: SignAndEncrypt, trust_on_first_use: true}
auth: {type: certificate, certificate: `+certPath+`, private_key: `+keyPath+`}
nodes:
  - {id: "`+s.NodeID(s.Tag(0))+`", name: t0}
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "data with a user certificate", func(rec bus.Record) bool { return rec.Tag == "t0" && rec.Quality == bus.Good })
}

func TestUserPassword(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 5, Users: map[string]string{"op": "s3cret"}, DenyAnonymous: true})
	cfg := func(pass string) string {
		return config(s, fast+`
security: {trust_on_first_use: true}
auth: {type: username, username: op, password: `+pass+`}
nodes:
  - {id: "`+s.NodeID(s.Tag(2))+`", name: t2}
`)
	}
	r := run(t, decode(t, cfg("s3cret")))
	r.until(t, 10*time.Second, "data with the right password", func(rec bus.Record) bool { return rec.Tag == "t2" && rec.Quality == bus.Good })

	bad := run(t, decode(t, cfg("wrong")))
	for deadline := time.Now().Add(10 * time.Second); ; {
		st := bad.Env.State().Snapshot()
		if strings.Contains(st.LastError, `refused user "op"`) && strings.Contains(st.LastError, "wrong user name or password") {
			if st.Phase != connectors.PhaseDown {
				t.Errorf("phase %s with a refused password", st.Phase)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no clear error for a wrong password; last error %q", st.LastError)
		}
		if b := bad.next(t, 50*time.Millisecond); b != nil {
			t.Fatal("data with a wrong password")
		}
	}
}

// TestRestartGap restarts the server mid-subscription, with the Plant
// namespace at another index afterwards: the gap is reported as BAD and
// data flows again by itself, from nodes re-resolved by namespace URI.
func TestRestartGap(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 50, Interval: 30 * time.Millisecond})
	c := decode(t, config(s, fast+`
nodes:
  - {id: "`+s.NodeIDURI(s.Tag(7))+`", name: seven}
browse:
  - root: "`+s.NodeIDURI("Plant")+`"
    include: "Line*/*"
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "first data", func(rec bus.Record) bool { return rec.Tag == "seven" && rec.Quality == bus.Good })
	s.SetExtraNamespaces(2)
	requireNoErr(t, s.Restart(t.Context()))
	restarted := time.Now().UnixNano()
	var gap bool
	r.until(t, 15*time.Second, "gap, then data again", func(rec bus.Record) bool {
		if rec.Tag == "seven" && rec.Quality == bus.Bad && rec.Status == uint32(ua.StatusBadNoCommunication) {
			gap = true
		}
		return gap && rec.Tag == "seven" && rec.Quality == bus.Good && rec.IngestTime > restarted
	})
	if s.NamespaceIndex() != 3 {
		t.Fatalf("namespace index %d, the test meant to move it", s.NamespaceIndex())
	}
	if st := c.Stats(); st.Sessions != 2 {
		t.Errorf("%d sessions, want 2", st.Sessions)
	}
}

// TestWatchdogStall: the server stops answering Publish requests while
// the connection stays open; the watchdog notices, reports the gap and
// rebuilds, and data flows once the server answers again.
func TestWatchdogStall(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 10, Interval: 30 * time.Millisecond})
	c := decode(t, config(s, fast+`
nodes:
  - {id: "`+s.NodeID(s.Tag(3))+`", name: three}
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "first data", func(rec bus.Record) bool { return rec.Quality == bus.Good })
	s.StallPublish(true)
	r.until(t, 10*time.Second, "watchdog gap record", func(rec bus.Record) bool {
		return rec.Quality == bus.Bad && rec.Status == uint32(ua.StatusBadTimeout)
	})
	if c.Stats().WatchdogRebuilds == 0 {
		t.Fatal("gap reported without a watchdog rebuild")
	}
	if s.Stats().PublishSwallowed == 0 {
		t.Fatal("the simulator swallowed no publish request")
	}
	s.StallPublish(false)
	resumed := time.Now().UnixNano()
	r.until(t, 15*time.Second, "data after the stall", func(rec bus.Record) bool {
		return rec.Quality == bus.Good && rec.IngestTime > resumed
	})
	if st := s.Stats(); st.MaxSessionsActive > 1 {
		t.Errorf("%d sessions open at once", st.MaxSessionsActive)
	}
}

// TestBadNodeAmongMany: unknown nodes are BAD with their status and the
// rest flow; a node that turns bad later is BAD while the others go on.
func TestBadNodeAmongMany(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 20})
	var nodes strings.Builder
	for i := range 20 {
		nodes.WriteString("  - {id: \"" + s.NodeIDURI(s.Tag(i)) + "\", name: \"" + lineTag(s, i) + "\"}\n")
	}
	nodes.WriteString("  - {id: \"" + s.NodeID("Plant/Nope") + "\", name: nope}\n")
	nodes.WriteString("  - {id: \"nsu=urn:nowhere;s=X\", name: nowhere}\n")
	c := decode(t, config(s, fast+"nodes:\n"+nodes.String()))
	r := run(t, c)
	bad := map[string]uint32{}
	good := map[string]bool{}
	r.until(t, 10*time.Second, "bad and good nodes", func(rec bus.Record) bool {
		if rec.Quality == bus.Bad {
			bad[rec.Tag] = rec.Status
		} else {
			good[rec.Tag] = true
		}
		return len(good) == 20 && len(bad) == 2
	})
	if bad["nope"] != uint32(ua.StatusBadNodeIDUnknown) || bad["nowhere"] != uint32(ua.StatusBadNodeIDUnknown) {
		t.Errorf("bad statuses %v", bad)
	}
	requireNoErr(t, s.SetStatus(s.Tag(4), ua.StatusBadSensorFailure))
	s.Tick()
	var failed bool
	others := map[string]bool{}
	r.until(t, 10*time.Second, "one BAD node, others flowing", func(rec bus.Record) bool {
		if rec.Tag == lineTag(s, 4) && rec.Quality == bus.Bad && rec.Status == uint32(ua.StatusBadSensorFailure) {
			failed = true
		} else if rec.Quality == bus.Good && rec.Value.Equal(expect(lineIndex(rec.Tag), 1)) {
			others[rec.Tag] = true
		}
		return failed && len(others) == 19
	})
	if st := c.Stats(); st.Sessions != 1 || st.BadItems != 2 {
		t.Errorf("stats %+v: the bad nodes must not cost the session", st)
	}
}

// TestOneSessionPerEndpoint restarts the server and drops its sessions
// several times; the server never sees two sessions of the connector at
// once.
func TestOneSessionPerEndpoint(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 10, Interval: 30 * time.Millisecond})
	c := decode(t, config(s, fast+`
nodes:
  - {id: "`+s.NodeIDURI(s.Tag(0))+`", name: zero}
`))
	r := run(t, c)
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	for i := range rounds {
		since := time.Now().UnixNano()
		r.until(t, 15*time.Second, "data", func(rec bus.Record) bool { return rec.Quality == bus.Good && rec.IngestTime > since })
		// Data can reach the bus a moment before the server counts the
		// session that carries it as active (a held message emitted on
		// reconnect): wait for the count, never for a second session.
		poll(t, 10*time.Second, "one active session", func() bool { return s.Stats().SessionsActive == 1 })
		if st := s.Stats(); st.SessionsActive != 1 || st.MaxSessionsActive != 1 {
			t.Fatalf("round %d: %d sessions active, at most %d at once; want 1", i, st.SessionsActive, st.MaxSessionsActive)
		}
		if i%2 == 0 {
			requireNoErr(t, s.Restart(t.Context()))
		} else {
			s.DropSessions()
		}
	}
	if st := c.Stats(); st.Sessions != uint64(rounds) {
		t.Errorf("%d sessions opened for %d rounds", st.Sessions, rounds)
	}
}

func TestWriteBack(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 5})
	c := decode(t, config(s, fast+`
nodes:
  - {id: "`+s.NodeIDURI(simopcua.SetpointPath)+`", name: setpoint}
  - {path: "Plant/Limit", name: limit}
`))
	r := run(t, c)
	r.until(t, 10*time.Second, "connected", func(rec bus.Record) bool { return rec.Tag == "setpoint" })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// The page asks first: the server's access levels answer.
	for tag, want := range map[string][2]bool{"setpoint": {true, true}, "limit": {false, true}, "nope": {false, false}} {
		if w, known := c.TagWritable("plc", tag); w != want[0] || known != want[1] {
			t.Errorf("TagWritable(%s) = %v, %v; want %v, %v", tag, w, known, want[0], want[1])
		}
	}
	requireNoErr(t, c.WriteTag(ctx, "plc", "setpoint", bus.Double(42.5)))
	if v, _, _ := s.Value(simopcua.SetpointPath); v != 42.5 {
		t.Errorf("setpoint = %v after writing 42.5", v)
	}
	r.until(t, 10*time.Second, "written value comes back", func(rec bus.Record) bool {
		return rec.Tag == "setpoint" && rec.Value.Equal(bus.Double(42.5))
	})
	requireNoErr(t, c.WriteTag(ctx, "plc", "setpoint", bus.Long(7))) // converted to Double
	if v, _, _ := s.Value(simopcua.SetpointPath); v != 7.0 {
		t.Errorf("setpoint = %v after writing 7", v)
	}
	err := c.WriteTag(ctx, "plc", "limit", bus.Double(1))
	var se *StatusError
	if !errors.As(err, &se) || !errors.Is(err, ua.StatusBadNotWritable) {
		t.Fatalf("write to a read-only node: %v", err)
	}
	// The server said no: the command failed (it was not refused by ferry).
	if st := command.NewResult(&command.Command{Device: "plc", Tag: "limit"}, err).Status; st != command.StatusFailed {
		t.Errorf("BadNotWritable is %q, want %q", st, command.StatusFailed)
	}
	if !strings.Contains(err.Error(), "BadNotWritable") {
		t.Errorf("error %q does not name the status", err)
	}
	err = c.WriteTag(ctx, "plc", "setpoint", bus.String("hot"))
	if !errors.Is(err, ErrConvert) {
		t.Errorf("write of a non-number to a Double: %v", err)
	}
	// Never sent: refused.
	if st := command.NewResult(&command.Command{}, err).Status; st != command.StatusRefused {
		t.Errorf("an unconvertible value is %q, want %q", st, command.StatusRefused)
	}
	err = c.WriteTag(ctx, "plc", "nope", bus.Double(1))
	if !errors.Is(err, connectors.ErrUnknownTag) {
		t.Errorf("write to an unknown tag: %v", err)
	}
	if st := command.NewResult(&command.Command{}, err).Status; st != command.StatusRefused {
		t.Errorf("an unknown tag is %q, want %q", st, command.StatusRefused)
	}
	if err := c.WriteTag(ctx, "other", "setpoint", bus.Double(1)); !errors.Is(err, connectors.ErrUnknownTag) {
		t.Errorf("write to another device: %v", err)
	}
}
