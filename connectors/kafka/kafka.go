// Package kafka is the Kafka uplink: a sink that produces batches to a
// Kafka topic (or a Kafka-compatible endpoint of a cloud hub) with
// franz-go's idempotent producer, acks from every in-sync replica, keyed
// by device so a device's records stay in one partition, in order.
package kafka

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/topics"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "kafka",
		Roles:   connectors.RoleSink,
		New:     func() connectors.Connector { return &Kafka{} },
		Sample:  sample,
		Summary: "Kafka uplink: idempotent producer, acks=all, keyed by device, Avro or JSON, TLS and SASL PLAIN/SCRAM",
	})
}

// Record header names.
const (
	HeaderContentType = "content-type"
	HeaderSchema      = "ferry-schema"
	// HeaderBackfill marks records sent from a backlog behind newer data
	// (drain mode live-first), as the MQTT and HTTP uplinks do.
	HeaderBackfill = "ferry-backfill"
)

// Kafka is the sink.
type Kafka struct {
	Config `yaml:",inline"`

	env   *connectors.Env
	cl    *kgo.Client
	topic string
	up    atomic.Bool

	sendMu sync.Mutex // keeps produce calls in batch order
	// Under sendMu, set up on the first send.
	keys   *topics.Resolver // renders a record's key
	enc    *bus.JSONEncoder
	shape  bus.JSONShape
	isJSON bool
	groups []topics.Group
}

// Start builds the client and starts the link check; nothing is dialled
// until then, and a cluster that is down is a sink that is down, not a
// failed start.
func (k *Kafka) Start(_ context.Context, env *connectors.Env) error {
	k.env = env
	r := strings.NewReplacer("{site}", env.Site, "{module}", env.Name)
	k.topic = r.Replace(k.Topic)
	id := k.ClientID
	if id == "" {
		id = "ferry-" + env.Site + "-" + env.Name
	}
	opts, err := k.options(id, k.topic)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	k.cl = cl
	env.Connecting()
	env.Go("link", k.link)
	return nil
}

// link pings the cluster: the sink is up while a broker answers. franz-go
// keeps its own connections; this is what tells the runtime (and the
// status page) whether sending can go on, and wakes a waiting backlog the
// moment the cluster is back.
func (k *Kafka) link(ctx context.Context) error {
	bo := connectors.Backoff{Max: k.Ping.D()}
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, k.DialTimeout.D())
		err := k.cl.Ping(pctx)
		cancel()
		wait := k.Ping.D()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k.setDown(fmt.Errorf("kafka %s: %w", strings.Join(k.Brokers, ","), err))
			wait = bo.Next()
		} else {
			bo.Reset()
			if !k.up.Swap(true) {
				k.env.Up()
			}
		}
		if connectors.Sleep(ctx, wait) != nil {
			return nil
		}
	}
	return nil
}

func (k *Kafka) setDown(err error) {
	k.up.Store(false)
	k.env.Down(err)
}

// Write produces b and waits for every record's acknowledgement (up to
// ack_timeout): with the cluster down it waits for it to come back, so a
// backlog drains as soon as it does.
func (k *Kafka) Write(ctx context.Context, b *bus.Batch) error {
	wait, err := k.send(b)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Send hands b's records to the producer in order and returns without
// waiting for the acknowledgements; wait does. With the cluster down it
// fails at once: the runtime then writes the failed batches again, in
// order, before anything newer.
func (k *Kafka) Send(_ context.Context, b *bus.Batch) (func(context.Context) error, error) {
	if !k.up.Load() {
		return nil, fmt.Errorf("kafka %s: %w", strings.Join(k.Brokers, ","), connectors.ErrNotConnected)
	}
	return k.send(b)
}

// acks collects the outcome of one batch's records.
type acks struct {
	pending atomic.Int64
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

func (a *acks) promise(_ *kgo.Record, err error) {
	if err != nil {
		a.mu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.mu.Unlock()
	}
	if a.pending.Add(-1) == 0 {
		close(a.done)
	}
}

// send produces b's records: with format json one Kafka record per ferry
// record; otherwise one per key (device or source), holding that key's
// records of the batch in order. The producer keeps produce order per
// partition, and a key always maps to the same partition.
func (k *Kafka) send(b *bus.Batch) (func(context.Context) error, error) {
	k.sendMu.Lock()
	defer k.sendMu.Unlock()
	k.prepare()
	var rs []*kgo.Record
	if k.isJSON && k.shape == bus.JSONObjectShape {
		rs = make([]*kgo.Record, 0, len(b.Records))
		for i := range b.Records {
			r := &b.Records[i]
			rs = append(rs, k.record(k.keys.Topic(r), b.Records[i:i+1]))
		}
	} else {
		k.groups = k.keys.Group(k.groups[:0], b.Records)
		rs = make([]*kgo.Record, 0, len(k.groups))
		for _, g := range k.groups {
			rs = append(rs, k.record(g.Topic, g.Records))
		}
		clear(k.groups)
	}
	if b.Backfill {
		for _, r := range rs {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderBackfill, Value: []byte("true")})
		}
	}
	a := &acks{done: make(chan struct{})}
	if len(rs) == 0 {
		close(a.done)
	}
	a.pending.Store(int64(len(rs)))
	for _, r := range rs {
		// Not the caller's context: a record cancelled after it was
		// buffered would fail every later one of its partition.
		k.cl.Produce(context.Background(), r, a.promise)
	}
	at := time.Now()
	return func(ctx context.Context) error {
		// A little past the producer's own delivery timeout, which fails
		// the record itself when it can.
		wctx, cancel := context.WithDeadline(ctx, at.Add(k.AckTimeout.D()+k.Ping.D()))
		defer cancel()
		select {
		case <-a.done:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			k.setDown(fmt.Errorf("kafka %s: no acknowledgement within %v", k.topic, k.AckTimeout.D()))
			return fmt.Errorf("kafka %s: no acknowledgement within %v: %w", k.topic, k.AckTimeout.D(), connectors.ErrNotConnected)
		}
		a.mu.Lock()
		err := a.err
		a.mu.Unlock()
		switch {
		case err == nil:
			return nil
		case poison(err):
			return fmt.Errorf("kafka %s: %w: %w", k.topic, connectors.ErrPoison, err)
		}
		k.setDown(fmt.Errorf("kafka %s: %w", k.topic, err))
		return fmt.Errorf("kafka %s: produce: %w", k.topic, err)
	}, nil
}

// prepare sets up the encoding state on first use; called under sendMu.
func (k *Kafka) prepare() {
	if k.keys != nil {
		return
	}
	// The key is rendered as a topic template is: {device} or {source}.
	t, _ := topics.Parse("{" + k.Key + "}")
	k.keys = topics.NewResolver(t, k.env.Site, k.env.Name)
	k.shape, k.isJSON = bus.ParseJSONShape(k.Format)
	k.enc = k.JSONOutput.Encoder()
}

// record encodes recs as one Kafka record with its headers. The value is
// the record's own: franz-go holds it until the broker answered.
func (k *Kafka) record(key string, recs []bus.Record) *kgo.Record {
	r := &kgo.Record{Key: []byte(key)}
	if k.isJSON {
		r.Value = k.shape.Append(k.enc, nil, recs)
		r.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(k.shape.ContentType())}}
		return r
	}
	b := bus.Batch{Records: recs}
	r.Value = b.AppendAvro(nil)
	r.Headers = []kgo.RecordHeader{
		{Key: HeaderContentType, Value: []byte(bus.ContentTypeAvro)},
		{Key: HeaderSchema, Value: []byte(bus.FingerprintHex())},
	}
	return r
}

// poison reports errors that a retry of the same records cannot cure: the
// broker refused their content. Anything else (a lost leader, a refused
// login, a topic not allowed yet) may heal and is retried.
func poison(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
}

// Stop flushes briefly and closes the client. Records not acknowledged
// stay in the spool and are sent again after a restart.
func (k *Kafka) Stop(ctx context.Context) error {
	if k.cl == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	_ = k.cl.Flush(fctx)
	cancel()
	k.cl.Close()
	return nil
}

var _ connectors.Pipeliner = (*Kafka)(nil)
