// Package cloud is the far side of ferry's uplinks in tests and the demo: an
// MQTT broker and an HTTP endpoint that decode every payload they receive and
// keep, per source, which sequence numbers arrived, so a test can ask for
// gaps and duplicates instead of trusting a count.
package cloud

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/logfloor"
)

// Config says where the endpoints listen.
type Config struct {
	MQTTAddr string // default 127.0.0.1:0; "off" disables the broker
	HTTPAddr string // default 127.0.0.1:0; "off" disables the endpoint
	// MQTTTLS, when set, makes the broker listen with TLS (tests of the
	// uplink's CA, client-certificate and SNI settings).
	MQTTTLS *tls.Config
	Logger  *slog.Logger
}

// Cloud is a running receiving endpoint.
type Cloud struct {
	logger  *slog.Logger
	broker  *mqtt.Server
	tcp     *listeners.TCP
	httpLn  net.Listener
	httpSrv *http.Server
	status  atomic.Int32 // forced HTTP answer; 0 = normal
	t       *tracker
	dec     bus.Decoder // used under t.mu
	closed  sync.Once
}

// Start starts the endpoints; they stop on Close or when ctx ends.
func Start(ctx context.Context, cfg Config) (*Cloud, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cloud{logger: cfg.Logger.With("component", "sim/cloud"), t: newTracker()}
	if cfg.MQTTAddr != "off" {
		if cfg.MQTTAddr == "" {
			cfg.MQTTAddr = "127.0.0.1:0"
		}
		c.broker = mqtt.New(&mqtt.Options{Logger: quiet(cfg.Logger), InlineClient: true})
		if err := c.broker.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
		if err := c.broker.AddHook(&receiver{c: c}, nil); err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
		c.tcp = listeners.NewTCP(listeners.Config{ID: "cloud", Address: cfg.MQTTAddr, TLSConfig: cfg.MQTTTLS})
		if err := c.broker.AddListener(c.tcp); err != nil {
			return nil, fmt.Errorf("cloud: mqtt listen %s: %w", cfg.MQTTAddr, err)
		}
		if err := c.broker.Serve(); err != nil {
			return nil, fmt.Errorf("cloud: mqtt: %w", err)
		}
		c.logger.Info("cloud mqtt listening", "addr", c.tcp.Address())
	}
	if cfg.HTTPAddr != "off" {
		if cfg.HTTPAddr == "" {
			cfg.HTTPAddr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("cloud: http listen %s: %w", cfg.HTTPAddr, err)
		}
		c.httpLn = ln
		c.httpSrv = &http.Server{Handler: http.HandlerFunc(c.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = c.httpSrv.Serve(ln) }()
		c.logger.Info("cloud http listening", "addr", "http://"+ln.Addr().String())
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	return c, nil
}

// quiet keeps mochi's per-connection chatter (every reset connection is a
// warning with no message) out of the demo's log and test output.
func quiet(l *slog.Logger) *slog.Logger {
	return logfloor.New(l, slog.LevelError)
}

// MQTTAddr is the broker's host:port.
func (c *Cloud) MQTTAddr() string { return c.tcp.Address() }

// HTTPURL is the HTTP endpoint's base URL; any path accepts POSTs.
func (c *Cloud) HTTPURL() string { return "http://" + c.httpLn.Addr().String() }

// SetHTTPStatus makes the HTTP endpoint answer code to every POST without
// counting it (0 restores normal answers): 503 for an outage, 400 for a
// poison-batch test.
func (c *Cloud) SetHTTPStatus(code int) { c.status.Store(int32(code)) }

// Report returns what has arrived so far.
func (c *Cloud) Report() Report {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.t.report()
}

// Wait blocks until cond holds for the report or ctx ends; it re-checks
// after every payload, so tests wait for an event, not a duration.
func (c *Cloud) Wait(ctx context.Context, cond func(Report) bool) (Report, error) {
	for {
		c.t.mu.Lock()
		r := c.t.report()
		ch := c.t.notify
		c.t.mu.Unlock()
		if cond(r) {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return r, fmt.Errorf("cloud: waiting: %w (report: %d unique, %d duplicates, %d missing, %d skipped by crashes)", ctx.Err(), r.Unique, r.Duplicates, r.Missing(), r.CrashSkipped())
		}
	}
}

// Close stops both endpoints. It may be called more than once.
func (c *Cloud) Close() {
	c.closed.Do(func() {
		if c.broker != nil {
			_ = c.broker.Close()
		}
		if c.httpSrv != nil {
			_ = c.httpSrv.Close()
		}
	})
}

// ingest decodes one payload and counts its records. Avro single-object
// batches and Avro object container files are recognised by their magic;
// anything else is read as JSON (an array, or JSON lines).
func (c *Cloud) ingest(p []byte) error {
	c.t.mu.Lock()
	defer func() {
		c.t.done()
		c.t.mu.Unlock()
	}()
	payloads := [][]byte{p}
	if bytes.HasPrefix(p, ocfMagic) {
		var err error
		if payloads, err = ocfBatches(p); err != nil {
			c.t.malformed++
			return err
		}
	}
	if len(p) >= 2 && (p[0] == 0xC3 && p[1] == 0x01 || bytes.HasPrefix(p, ocfMagic)) {
		for _, p := range payloads {
			var b bus.Batch
			if err := c.dec.Decode(p, &b); err != nil {
				c.t.malformed++
				return err
			}
			c.t.batches++
			now := time.Now().UnixNano()
			for i := range b.Records {
				r := &b.Records[i]
				c.t.add(r.Source, r.Seq)
				c.announced(r.Source, r.Seq, r.Attrs)
				c.t.latency(r.Source, time.Duration(now-r.SourceTime))
			}
		}
		return nil
	}
	type rec struct {
		Source string            `json:"source"`
		Seq    uint64            `json:"seq"`
		Attrs  map[string]string `json:"attrs"`
	}
	var recs []rec
	trimmed := bytes.TrimSpace(p)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &recs); err != nil {
			c.t.malformed++
			return err
		}
	default:
		sc := bufio.NewScanner(bytes.NewReader(trimmed))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var r rec
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				c.t.malformed++
				return err
			}
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		c.t.malformed++
		return errors.New("no records in payload")
	}
	c.t.batches++
	for _, r := range recs {
		c.t.add(r.Source, r.Seq)
		c.announced(r.Source, r.Seq, r.Attrs)
	}
	return nil
}

// announced keeps the gap a record announces, if any, so the report can
// tell a crash or a new epoch from loss; called under t.mu, after add.
func (c *Cloud) announced(source string, seq uint64, attrs map[string]string) {
	if len(attrs) == 0 {
		return
	}
	a, ok := parseAnnouncement(attrs, seq)
	if !ok || !c.t.announce(source, a) {
		return
	}
	if a.Kind == connectors.SeqGapCrash {
		c.logger.Info("seq gap announced", "source", source, "kind", a.Kind, "from", a.From, "to", a.To)
		return
	}
	c.logger.Info("seq gap announced", "source", source, "kind", a.Kind, "to", a.To)
}

func (c *Cloud) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST batches here", http.StatusMethodNotAllowed)
		return
	}
	if code := c.status.Load(); code != 0 {
		http.Error(w, "forced by the test", int(code))
		return
	}
	var body io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	p, err := io.ReadAll(io.LimitReader(body, 256<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := c.ingest(p); err != nil {
		http.Error(w, "cannot decode: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// receiver counts every publish the broker accepts.
type receiver struct {
	mqtt.HookBase
	c *Cloud
}

func (h *receiver) ID() string { return "sim-cloud-receiver" }

func (h *receiver) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *receiver) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if err := h.c.ingest(pk.Payload); err != nil {
		h.c.logger.Warn("undecodable payload", "topic", pk.TopicName, "error", err)
	}
	return pk, nil
}
