package spool

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Fsync policies.
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
	FsyncNever    = "never"
)

// What Publish does when the quota is reached.
const (
	DropOldest = "drop-oldest"
	Block      = "block"
)

// FsyncPolicies and OnFullPolicies list the values Config accepts.
var (
	FsyncPolicies  = []string{FsyncAlways, FsyncInterval, FsyncNever}
	OnFullPolicies = []string{DropOldest, Block}
)

// Limits and defaults.
const (
	DefaultSegmentSize   = 16 << 20
	DefaultQuota         = 1 << 30
	DefaultFsyncInterval = 100 * time.Millisecond
	MinSegmentSize       = 64 << 10
	MaxSegmentSize       = 1 << 30
	MaxWindow            = 4096
	// DefaultSinkWindow is the window of a sink's spool when the file sets
	// none (store_and_forward: true; the router applies it, a bare
	// Config keeps 1). With one batch in flight, an uplink waits a round
	// trip per batch, and against a broker that leaves Nagle on (stock
	// mosquitto) a delayed ACK on top: 22 batches/s on loopback with a
	// per-device topic. 64 drained the same backlog at about 2,900
	// batches/s on loopback and 1,100 across a 20 ms round trip (16: 370,
	// 256: no better), measured by e2e BenchmarkDrainWindow.
	DefaultSinkWindow = 64
)

// Config is a spool's section of ferry.yaml (a sink's store_and_forward
// block). Name and Registerer are set in code.
type Config struct {
	// Dir holds the spool: one per sink. Required.
	Dir string `yaml:"dir"`
	// SegmentSize is the size at which a lane's segment file is sealed and
	// a new one started; disk is given back a whole segment at a time.
	// Default 16MiB, at least 64KiB. An entry may not exceed it.
	SegmentSize conf.Size `yaml:"segment_size"`
	// Quota bounds the bytes of entries waiting (not yet acknowledged),
	// over all lanes. Default 1GiB; at least one segment.
	Quota conf.Size `yaml:"quota"`
	// OnFull is drop-oldest (default) or block.
	OnFull string `yaml:"on_full"`
	// Fsync is always, interval (default) or never; see the package doc.
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the period of the interval policy; default 100ms.
	FsyncInterval conf.Duration `yaml:"fsync_interval"`
	// MaxAge expires entries older than this (since they were appended),
	// on top of each message's own ferry-ttl. 0 = no limit.
	MaxAge conf.Duration `yaml:"max_age"`
	// KeyFile turns on encryption at rest: AES-256-GCM with the key in
	// this file, 32 raw bytes or 64 hex characters.
	KeyFile string `yaml:"key_file"`
	// Window is how many messages one subscription may have delivered and
	// not yet acknowledged. Default 1: the next message waits for the
	// previous one's Ack, as watermill subscribers expect. A sink's spool
	// defaults to DefaultSinkWindow, so an uplink that pipelines drains at
	// link speed.
	Window int `yaml:"window"`

	// Name labels the metrics (the sink's name); default the Dir's base name.
	Name string `yaml:"-"`
	// Registerer receives the spool's metrics; nil registers none.
	Registerer prometheus.Registerer `yaml:"-"`

	// checkpointEvery is how often lanes' head files are written; tests
	// shorten it.
	checkpointEvery time.Duration
	// clock replaces time.Now in tests of expiry.
	clock clock
	// hooks lets tests inject a slow or failing disk; nil in production.
	hooks *hooks
}

// hooks are fault injection points for tests.
type hooks struct {
	// read runs before each read at a lane's cursor, without the store
	// lock.
	read func(path string, off int64)
	// write runs before each write to the spool's files (op is create,
	// append, seal, truncate, checkpoint or meta); an error it returns is
	// the write's error, as a full disk would give.
	write func(op, path string) error
}

type clock interface{ Now() time.Time }

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.Quota == 0 {
		c.Quota = DefaultQuota
	}
	if c.OnFull == "" {
		c.OnFull = DropOldest
	}
	if c.Fsync == "" {
		c.Fsync = FsyncInterval
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = conf.Duration(DefaultFsyncInterval)
	}
	if c.Window == 0 {
		c.Window = 1
	}
	if c.Name == "" && c.Dir != "" {
		c.Name = baseName(c.Dir)
	}
	if c.checkpointEvery == 0 {
		c.checkpointEvery = time.Second
	}
}

// Validate returns every problem in c (after SetDefaults) as conf field
// errors. Unlike most Validate methods it reads the key file: a key that
// cannot be used must be reported with the config's line, not at start.
func (c *Config) Validate() error {
	var p conf.Problems
	if c.Dir == "" {
		p.Add("dir", "is required")
	}
	if c.SegmentSize < MinSegmentSize || c.SegmentSize > MaxSegmentSize {
		p.Add("segment_size", "%s is outside %s..%s", c.SegmentSize, conf.Size(MinSegmentSize), conf.Size(MaxSegmentSize))
	}
	if c.Quota < c.SegmentSize {
		p.Add("quota", "%s is below one segment (segment_size %s)", c.Quota, c.SegmentSize)
	}
	if !oneOf(OnFullPolicies, c.OnFull) {
		p.Add("on_full", "%q is not one of %s", c.OnFull, strings.Join(OnFullPolicies, ", "))
	}
	if !oneOf(FsyncPolicies, c.Fsync) {
		p.Add("fsync", "%q is not one of %s", c.Fsync, strings.Join(FsyncPolicies, ", "))
	}
	if c.FsyncInterval < conf.Duration(time.Millisecond) {
		p.Add("fsync_interval", "%s is below 1ms", c.FsyncInterval)
	}
	if c.Window < 1 || c.Window > MaxWindow {
		p.Add("window", "%d is outside 1..%d", c.Window, MaxWindow)
	}
	if c.KeyFile != "" {
		if _, err := readKey(c.KeyFile); err != nil {
			p.Add("key_file", "%v", err)
		}
	}
	return p.Err()
}

// readKey loads an AES-256 key: 32 raw bytes, or 64 hex characters with
// surrounding white space.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read key: %w", err)
	}
	if len(b) == 32 {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 64 {
		k, err := hex.DecodeString(string(t))
		if err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("key file %s holds %d bytes; want 32 raw bytes or 64 hex characters", path, len(b))
}

func oneOf(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func baseName(dir string) string {
	d := strings.TrimRight(dir, "/")
	if i := strings.LastIndexByte(d, '/'); i >= 0 {
		d = d[i+1:]
	}
	if d == "" {
		return "spool"
	}
	return d
}
