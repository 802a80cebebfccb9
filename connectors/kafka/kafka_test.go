package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/testpki"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
	"github.com/ferry-gateway/ferry/router/outlet"
)

const topic = "ferry.s1"

func TestSample(t *testing.T) {
	sampletest.Check(t, "kafka", "README.md")
}

// cluster is an in-process Kafka (franz-go's kfake, the real protocol)
// that can be restarted on the same port with the same data.
type cluster struct {
	t    *testing.T
	dir  string
	port int
	opts []kfake.Opt
	mu   sync.Mutex
	c    *kfake.Cluster
}

func startCluster(t *testing.T, opts ...kfake.Opt) *cluster {
	t.Helper()
	k := &cluster{t: t, dir: t.TempDir(), opts: opts}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic), kfake.DataDir(k.dir)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.ListenAddrs()[0])
	k.port, _ = strconv.Atoi(port)
	k.c = c
	t.Cleanup(func() { k.mu.Lock(); k.c.Close(); k.mu.Unlock() })
	return k
}

func (k *cluster) addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

// restart stops the broker (it persists its log and producer state to its
// data dir) and starts a new one on the same port from that data.
func (k *cluster) restart() {
	k.stop()
	k.start()
}

func (k *cluster) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.c.Close()
}

func (k *cluster) start() {
	k.mu.Lock()
	defer k.mu.Unlock()
	var err error
	for range 50 { // the port can take a moment to be free again
		k.c, err = kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir)}, k.opts...)...)
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // retrying a bind, nothing to await
	}
	k.t.Fatalf("restart kfake: %v", err)
}

func newSink(t *testing.T, brokers string, mod func(*Config)) *Kafka {
	t.Helper()
	k := &Kafka{Config: Config{Brokers: []string{brokers}, Topic: "ferry.{site}",
		AckTimeout: conf.Duration(10 * time.Second), Ping: conf.Duration(100 * time.Millisecond)}}
	if mod != nil {
		mod(&k.Config)
	}
	k.SetDefaults()
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	return k
}

var sinks int

func startSink(t *testing.T, k *Kafka) *connectors.Env {
	t.Helper()
	sinks++
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: fmt.Sprintf("kafka%d", sinks), Site: "s1", DataDir: t.TempDir(), Sink: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = k.Stop(ctx)
		_ = env.Shutdown(ctx)
	})
	return env
}

// batch is n records of four devices, seqs from first on.
func batch(first uint64, n int) *bus.Batch {
	b := &bus.Batch{}
	now := time.Now().UnixNano()
	for i := range n {
		b.Records = append(b.Records, bus.Record{Source: "gen", Device: "press-" + strconv.Itoa(i%4), Tag: "t",
			Value: bus.Double(float64(i)), SourceTime: now, IngestTime: now, Seq: first + uint64(i)})
	}
	return b
}

// consumed is what a consumer read back: records per partition in log
// order, with the key and headers of each Kafka record.
type consumed struct {
	records []bus.Record
	keys    map[string]int32 // device → the partition its records were in
	headers map[string]string
	// backfill: seqs that came in a record marked ferry-backfill.
	backfill map[uint64]bool
}

// consume reads the topic from the start until cond holds for what was
// read so far or the deadline passes.
func consume(t *testing.T, addr string, format string, cond func(c *consumed) bool, opts ...kgo.Opt) *consumed {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := &consumed{keys: map[string]int32{}, headers: map[string]string{}, backfill: map[uint64]bool{}}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond(out) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumer: %d records read; condition not met", len(out.records))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				out.headers[h.Key] = string(h.Value)
			}
			var recs []bus.Record
			switch format {
			case "avro":
				var b bus.Batch
				if err := bus.DecodeBatch(r.Value, &b); err != nil {
					t.Fatalf("record does not decode: %v", err)
				}
				recs = b.Records
			case "json":
				var w struct {
					Device string
					Seq    uint64
				}
				if err := json.Unmarshal(r.Value, &w); err != nil {
					t.Fatalf("record %q: %v", r.Value, err)
				}
				recs = []bus.Record{{Device: w.Device, Seq: w.Seq}}
			}
			for _, rec := range recs {
				for _, h := range r.Headers {
					if h.Key == HeaderBackfill && string(h.Value) == "true" {
						out.backfill[rec.Seq] = true
					}
				}
				if rec.Device != string(r.Key) {
					t.Fatalf("record of %s under key %q", rec.Device, r.Key)
				}
				if p, ok := out.keys[rec.Device]; ok && p != r.Partition {
					t.Fatalf("%s in partitions %d and %d", rec.Device, p, r.Partition)
				}
				out.keys[rec.Device] = r.Partition
			}
			out.records = append(out.records, recs...)
		})
	}
	return out
}

// check requires every seq in [1, n] present and, per device, first seen
// in increasing order; it returns the duplicates.
func (c *consumed) check(t *testing.T, n uint64) int {
	t.Helper()
	seen := map[uint64]bool{}
	last := map[string]uint64{}
	dups := 0
	for _, r := range c.records {
		if seen[r.Seq] {
			dups++
			continue
		}
		seen[r.Seq] = true
		if r.Seq < last[r.Device] {
			t.Fatalf("%s: seq %d after %d: reordered", r.Device, r.Seq, last[r.Device])
		}
		last[r.Device] = r.Seq
	}
	for s := uint64(1); s <= n; s++ {
		if !seen[s] {
			t.Fatalf("seq %d lost (%d distinct of %d)", s, len(seen), n)
		}
	}
	return dups
}

func unique(c *consumed) int {
	seen := map[uint64]bool{}
	for _, r := range c.records {
		seen[r.Seq] = true
	}
	return len(seen)
}

func TestConformance(t *testing.T) {
	var k *cluster
	conntest.Run(t, conntest.Features{Sink: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			k = startCluster(t)
			// conntest's Env has no site.
			return newSink(t, k.addr(), func(c *Config) { c.Topic = topic })
		},
		Restart: func(t *testing.T) { k.restart() },
		Delivered: func(t *testing.T, seqs []uint64) bool {
			c := consume(t, k.addr(), "avro", func(c *consumed) bool { return unique(c) >= len(seqs) })
			return unique(c) == len(seqs)
		},
	})
}

// TestFormatsKeysAndHeaders: a device's records are keyed by it and stay
// in one partition; the headers name the content type and, for Avro, the
// schema fingerprint.
func TestFormatsKeysAndHeaders(t *testing.T) {
	for _, format := range []string{"avro", "json"} {
		t.Run(format, func(t *testing.T) {
			k := startCluster(t)
			s := newSink(t, k.addr(), func(c *Config) { c.Format = format; c.Compression = "zstd" })
			startSink(t, s)
			for i := range 5 {
				b := batch(uint64(i*40+1), 40)
				b.Backfill = i == 4
				if err := s.Write(t.Context(), b); err != nil {
					t.Fatal(err)
				}
			}
			c := consume(t, k.addr(), format, func(c *consumed) bool { return unique(c) >= 200 })
			c.check(t, 200)
			if len(c.keys) != 4 {
				t.Fatalf("keys %v", c.keys)
			}
			want := map[string]string{"avro": bus.ContentTypeAvro, "json": "application/json"}[format]
			if c.headers[HeaderContentType] != want {
				t.Fatalf("content-type %q, want %q", c.headers[HeaderContentType], want)
			}
			for seq := uint64(1); seq <= 200; seq++ {
				if c.backfill[seq] != (seq > 160) {
					t.Fatalf("seq %d marked backfill: %v", seq, c.backfill[seq])
				}
			}
			if format == "avro" && c.headers[HeaderSchema] != bus.FingerprintHex() {
				t.Fatalf("schema header %q", c.headers[HeaderSchema])
			}
		})
	}
}

// TestBrokerRestartMidStream drives the sink with the runtime's own
// pipelined runner (window 16). The broker is stopped with batches in
// flight, batches keep coming while it is down (the sink reports down and
// the runner holds them), and it starts again on the same port from the
// same data: every record arrives, and per device in order.
func TestBrokerRestartMidStream(t *testing.T) {
	k := startCluster(t)
	s := newSink(t, k.addr(), nil)
	env := startSink(t, s)
	q := outlet.NewMemory(outlet.BufferConfig{MaxBytes: 256 << 20, OnFull: outlet.Block}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); outlet.Run(ctx, s, env, q, 16) }()
	defer func() { cancel(); <-done }()

	const batches, per = 300, 50
	for i := range batches {
		switch i {
		case 100:
			// Batches 80-99 were put without waiting: some are in flight.
			k.stop()
			waitPhase(t, env, connectors.PhaseDown)
		case 200:
			k.start()
		}
		if err := q.Put(ctx, batch(uint64(i*per+1), per), outlet.Meta{}); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 && (i < 100 || i > 200) {
			waitEmptyish(t, q)
		}
	}
	c := consume(t, k.addr(), "avro", func(c *consumed) bool { return unique(c) >= batches*per })
	dups := c.check(t, batches*per)
	t.Logf("%d records through a broker stop and start: none lost, none reordered, %d duplicates", batches*per, dups)
}

func waitEmptyish(t *testing.T, q *outlet.Memory) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if !q.WaitEmpty(ctx) {
		t.Fatal("queue did not drain")
	}
}

// TestSASL: PLAIN and both SCRAM mechanisms log in; a wrong password
// leaves the sink down.
func TestSASL(t *testing.T) {
	k := startCluster(t, kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "pw1"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pw2"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pw3"))
	for _, c := range []SASL{{"PLAIN", "plain-user", "pw1"}, {"SCRAM-SHA-256", "scram256", "pw2"}, {"SCRAM-SHA-512", "scram512", "pw3"}} {
		s := newSink(t, k.addr(), func(cfg *Config) { sa := c; cfg.SASL = &sa })
		startSink(t, s)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		if err := s.Write(ctx, batch(1, 10)); err != nil {
			t.Fatalf("%s: %v", c.Mechanism, err)
		}
		cancel()
	}
	s := newSink(t, k.addr(), func(cfg *Config) { cfg.SASL = &SASL{"SCRAM-SHA-256", "scram256", "wrong"} })
	env := startSink(t, s)
	// kfake closes the connection on a failed login (the error says EOF);
	// what counts here is that the sink is down and says where.
	waitPhase(t, env, connectors.PhaseDown)
	if e := env.State().Snapshot().LastError; !strings.Contains(e, k.addr()) {
		t.Fatalf("last error %q does not name the brokers", e)
	}
}

// TestTLS: the sink verifies the broker against its CA.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t)
	caFile, cert := ca.WriteCA(dir), ca.Issue("kafka.test", x509.ExtKeyUsageServerAuth)
	k := startCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	s := newSink(t, k.addr(), func(c *Config) { c.TLS = &tlsconf.Config{CAFile: caFile} })
	startSink(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := s.Write(ctx, batch(1, 10)); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	c := consume(t, k.addr(), "avro", func(c *consumed) bool { return unique(c) >= 10 },
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	c.check(t, 10)
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "brokers: missing"},
		{Config{Brokers: []string{"kafka"}}, `brokers[0]: "kafka" is not HOST:PORT`},
		{Config{Brokers: []string{"k:9092"}, Topic: "a/b"}, "is not a Kafka topic name"},
		{Config{Brokers: []string{"k:9092"}, Key: "tag"}, `key: "tag" is not one of device, source`},
		{Config{Brokers: []string{"k:9092"}, Format: "csv"}, "format"},
		{Config{Brokers: []string{"k:9092"}, Compression: "brotli"}, "compression"},
		{Config{Brokers: []string{"k:9092"}, SASL: &SASL{Mechanism: "GSSAPI", Username: "u"}}, "sasl.mechanism"},
		{Config{Brokers: []string{"k:9092"}, Format: "avro", JSONOutput: bus.JSONOutput{Fields: []string{"tag"}}}, "fields"},
	} {
		cfg := c.cfg
		cfg.SetDefaults()
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
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
