package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// ErrFenced is wrapped by the error of Reserve once another instance owns
// the source, or once the term has ended for any other reason.
var ErrFenced = errors.New("lease: another instance owns this source")

// Defaults.
const (
	DefaultBucket    = "ferry_leases"
	DefaultSeqBucket = "ferry_seq"
)

// Config is how an Elector campaigns. Every instance sharing a bus should
// use the same buckets, Lease and Heartbeat.
type Config struct {
	Bucket    string        // KV bucket of leases; default "ferry_leases"
	SeqBucket string        // KV bucket of sequence high-water marks; default "ferry_seq"
	Instance  string        // this instance's name (required, unique among running instances)
	Lease     time.Duration // required, >= 2*Heartbeat
	Heartbeat time.Duration // required
	Replicas  int           // replicas of both buckets; default 1
}

func (c *Config) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.SeqBucket == "" {
		c.SeqBucket = DefaultSeqBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
}

var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate returns every problem in c (after defaults) as conf field errors.
func (c *Config) Validate() error {
	var p conf.Problems
	if c.Instance == "" {
		p.Add("instance", "missing: the name of this ferry instance, written into the leases it holds")
	}
	if c.Heartbeat <= 0 {
		p.Add("heartbeat", "%s: expected a positive duration, e.g. 2s", c.Heartbeat)
	}
	switch {
	case c.Lease <= 0:
		p.Add("lease", "%s: expected a positive duration of at least three heartbeats, e.g. 10s", c.Lease)
	case c.Lease < 3*c.Heartbeat:
		// The owner gives up Lease - Heartbeat after its last renewal was
		// sent; below three heartbeats one late renewal ends the term.
		p.Add("lease", "%s is shorter than three heartbeats (heartbeat %s): one late renewal would hand the source to another instance", c.Lease, c.Heartbeat)
	}
	for _, b := range []struct{ field, name string }{{"bucket", c.Bucket}, {"seq_bucket", c.SeqBucket}} {
		if !bucketName.MatchString(b.name) {
			p.Add(b.field, "%q: a bucket name holds only letters, digits, '_' and '-'", b.name)
		}
	}
	if c.Bucket == c.SeqBucket {
		p.Add("seq_bucket", "%q is also the lease bucket; the two need their own buckets (only leases expire)", c.SeqBucket)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.Add("replicas", "%d: JetStream keeps 1 to 5 replicas", c.Replicas)
	}
	return p.Err()
}

// Elector campaigns for leases on behalf of one instance. One Elector
// serves any number of keys, each with its own Run.
type Elector struct {
	cfg    Config
	leases jetstream.KeyValue
	seqs   jetstream.KeyValue
	m      *metrics
	logger *slog.Logger

	mu   sync.Mutex
	keys map[string]*keyState
}

// keyState is what Status reports about one key, and the slot that keeps
// two Runs of one key from campaigning against each other.
type keyState struct {
	slot chan struct{} // holds a token while a Run of the key is active

	// Guarded by Elector.mu.
	owner     string
	mine      bool
	since     time.Time
	takeovers int
}

// Ownership is what an instance knows about the owner of a key.
type Ownership struct {
	Key       string    `json:"key"`
	Owner     string    `json:"owner"` // instance holding the lease, "" when none is known
	Mine      bool      `json:"mine"`
	Since     time.Time `json:"since,omitzero"` // when this instance became owner (zero when not)
	Takeovers int       `json:"takeovers"`      // terms this instance has started for key
}

// New creates or updates the two buckets and returns an Elector for them.
// reg may be nil.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Elector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if js == nil {
		return nil, errors.New("lease: no JetStream handle")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	leases, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "ferry: active/standby leases of source connectors",
		// JetStream removes a key Lease after its last write: that is what
		// frees the lease of an owner that died or lost the bus.
		TTL:      cfg.Lease,
		History:  1,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease: bucket %s: %w", cfg.Bucket, err)
	}
	seqs, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.SeqBucket,
		Description: "ferry: end of the last block of record sequence numbers reserved per source",
		History:     1,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease: bucket %s: %w", cfg.SeqBucket, err)
	}
	return &Elector{
		cfg:    cfg,
		leases: leases,
		seqs:   seqs,
		m:      m,
		logger: logger.With("instance", cfg.Instance),
		keys:   map[string]*keyState{},
	}, nil
}

// Instance is the name this Elector writes into the leases it holds.
func (e *Elector) Instance() string { return e.cfg.Instance }

// Status is what this instance knows about key: who owns it (as last seen
// by a campaign, so up to a heartbeat old), and whether it is this instance.
func (e *Elector) Status(key string) Ownership {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.keys[key]
	if !ok {
		return Ownership{Key: key}
	}
	return Ownership{Key: key, Owner: st.owner, Mine: st.mine, Since: st.since, Takeovers: st.takeovers}
}

func (e *Elector) state(key string) *keyState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.keys[key]
	if !ok {
		st = &keyState{slot: make(chan struct{}, 1)}
		e.keys[key] = st
	}
	return st
}

// Run campaigns for key until ctx ends, calling work in a goroutine for
// each term this instance wins; see the package documentation for the
// protocol. Run returns once ctx has ended and work has returned.
//
// A second Run of the same key on the same Elector (a reload that starts
// the new one before the old one has finished) waits until the first has
// returned: two campaigns under one name would take each other's writes
// for their own.
func (e *Elector) Run(ctx context.Context, key string, work func(ctx context.Context, t *Term)) {
	st := e.state(key)
	select {
	case st.slot <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-st.slot }()
	r := &runner{e: e, key: key, kvKey: kvKey(key), st: st, log: e.logger.With("module", key), work: work}
	e.m.init(key)
	r.run(ctx)
}

// kvKey maps a source name to a valid KV key: bytes other than letters,
// digits, '-', '_' and '/' (including '=' itself) become "=XX", so distinct
// names stay distinct.
func kvKey(key string) string {
	plain := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '/'
	}
	if key != "" && strings.IndexFunc(key, func(r rune) bool { return r >= 128 || !plain(byte(r)) }) < 0 {
		return key
	}
	if key == "" {
		return "="
	}
	var sb strings.Builder
	for i := 0; i < len(key); i++ {
		if c := key[i]; plain(c) {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "=%02X", c)
		}
	}
	return sb.String()
}

// isConflict reports a compare-and-set refused because the key's revision
// is not the one expected. Replicated buckets report code 10164 instead of
// 10071, and Create after a delete returns the bare API error.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
