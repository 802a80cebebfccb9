package outlet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Drain modes (store_and_forward.drain.mode).
const (
	// DrainOrdered sends everything in the order it was spooled: after an
	// outage, new data waits until the backlog has gone.
	DrainOrdered = "ordered"
	// DrainLiveFirst sends new data ahead of a backlog, with a share of
	// the link, while the backlog drains oldest first in the rest.
	DrainLiveFirst = "live-first"

	DefaultLiveShare  = 0.5
	DefaultLiveBuffer = 8 << 20
	DefaultLiveMaxAge = 10 * time.Second
)

// DrainModes lists what drain.mode accepts.
var DrainModes = []string{DrainOrdered, DrainLiveFirst}

// DrainConfig is the drain: key of a sink's store_and_forward section.
type DrainConfig struct {
	// Mode is ordered (default) or live-first.
	Mode string `yaml:"mode"`
	// LiveShare is the share of the records sent that goes to live data
	// while both live data and a backlog wait (0 < share ≤ 1); either one
	// alone takes the whole link. Default 0.5.
	LiveShare float64 `yaml:"live_share"`
	// LiveBuffer bounds the memory the live copies hold (estimated as for
	// buffer.max_bytes). When full the oldest live copy goes: it is still
	// in the spool and is sent from there, so only its priority is lost.
	// Default 8MiB.
	LiveBuffer conf.Size `yaml:"live_buffer"`
	// LiveMaxAge drops a live copy that waited longer (it goes from the
	// spool instead): what was queued as the link went away is not live
	// when it comes back. Default 10s.
	LiveMaxAge conf.Duration `yaml:"live_max_age"`
}

// SetDefaults fills what the file left out.
func (c *DrainConfig) SetDefaults() {
	if c.Mode == "" {
		c.Mode = DrainOrdered
	}
	if c.LiveShare == 0 {
		c.LiveShare = DefaultLiveShare
	}
	if c.LiveBuffer == 0 {
		c.LiveBuffer = DefaultLiveBuffer
	}
	if c.LiveMaxAge == 0 {
		c.LiveMaxAge = conf.Duration(DefaultLiveMaxAge)
	}
}

// Validate checks the settings.
func (c *DrainConfig) Validate() error {
	var p conf.Problems
	if !slices.Contains(DrainModes, c.Mode) {
		p.Add("mode", "%q is not one of %s", c.Mode, strings.Join(DrainModes, ", "))
	}
	if !(c.LiveShare > 0 && c.LiveShare <= 1) {
		p.Add("live_share", "%v is not a share: want more than 0 and at most 1, e.g. 0.5", c.LiveShare)
	}
	if c.LiveBuffer < 0 {
		p.Add("live_buffer", "must be positive, e.g. 8MiB")
	}
	if c.LiveMaxAge < 0 {
		p.Add("live_max_age", "must be positive, e.g. 10s")
	}
	return p.Err()
}

// MetaLive is the metadata a live-first outlet puts on each batch it
// spools: its instance and the batch's put number ("<epoch>:<n>"), so that
// a spool entry whose copy already went out live is known when it comes up.
const MetaLive = "ferry-live"

// BehindAfter is how many spooled batches the sink may lag (spooled and not
// yet taken from the spool) before a live-first outlet sends new batches
// ahead of them. Below it the link keeps up, and strict order costs nothing.
var BehindAfter uint64 = 32

// LiveFirstStats is what a live-first outlet did.
type LiveFirstStats struct {
	Behind      bool  `json:"behind"`       // new data goes ahead of a backlog
	LiveWaiting int64 `json:"live_waiting"` // live copies waiting (batches)
	LiveBytes   int64 `json:"live_bytes"`
	LiveSent    int64 `json:"live_sent"`    // batches delivered live
	Backfilled  int64 `json:"backfilled"`   // batches handed out from the spool marked backfill
	Skipped     int64 `json:"skipped"`      // spool entries released because their live copy was delivered
	LiveDropped int64 `json:"live_dropped"` // live copies dropped (buffer full, too old): sent from the spool instead
}

// LiveFirst is a spool's outlet in drain mode live-first. Every batch is
// spooled as in ordered mode (the spool is what makes it durable). While
// the sink lags behind its spool (BehindAfter) and its link is up, each
// new batch is also kept as a live copy in a queue bounded by live_buffer
// and live_max_age (and emptied of what came in before an outage when the
// link returns, see watchLink), and Next hands out
// live copies and spool entries in the configured share: live copies in
// put order, spool entries in spool order (oldest first within a lane),
// each batch from the spool marked Backfill. A spool entry whose live copy was delivered is
// released without being sent again; one whose copy is still waiting is
// sent from the spool in its place, which is how the two streams meet
// again once the backlog is gone.
//
// At-least-once holds: a crash after a live delivery and before its spool
// entry is released sends the entry again after the restart (a duplicate,
// which consumers drop on source and seq), and a live copy never stands in
// for a spool entry before the far side took it.
type LiveFirst struct {
	q      *Bus
	cfg    DrainConfig
	logger *slog.Logger
	epoch  string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a live copy comes or settles
	closed  bool
	putN    uint64 // the last put number given
	spoolN  uint64 // the highest put number of this epoch received from the spool
	maxLive uint64 // the highest put number handed out live
	behind  bool
	live    []liveCopy // waiting, by put number
	bytes   int64
	flying  map[uint64]*bus.Batch // live copies handed out, not yet settled
	sent    bitset                // live copies delivered whose spool entries are to come
	head    *spoolHead            // received from the spool, not yet handed out
	link    *connectors.State     // the sink's, once a runner runs; nil: taken as up
	// Records sent while both sides had data: the share is kept on them.
	liveRecs, backRecs int64
	stats              LiveFirstStats
	droppedBurst       int64 // live copies dropped since behind began
}

type liveCopy struct {
	n    uint64
	b    *bus.Batch
	size int64
	at   time.Time
}

type spoolHead struct {
	msg  *message.Message
	n    uint64
	mine bool // spooled by this outlet (this epoch)
}

// NewLiveFirst returns the live-first outlet over the spool queue q.
func NewLiveFirst(q *Bus, cfg DrainConfig, logger *slog.Logger) *LiveFirst {
	cfg.SetDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var e [6]byte
	_, _ = rand.Read(e[:])
	return &LiveFirst{q: q, cfg: cfg, logger: logger, epoch: hex.EncodeToString(e[:]),
		changed: make(chan struct{}), flying: map[uint64]*bus.Batch{}}
}

func (l *LiveFirst) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Put spools b and, while the sink lags, keeps a live copy of it.
func (l *LiveFirst) Put(ctx context.Context, b *bus.Batch, m Meta) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.putN++
	n := l.putN
	if !l.behind && n-l.spoolN > BehindAfter {
		l.setBehind(true, "the sink lags its spool")
	}
	now := time.Now()
	// While the link is away nothing is live: what comes in is backlog.
	tee := l.behind && len(b.Records) > 0 && (l.link == nil || l.link.Phase() == connectors.PhaseUp)
	if tee {
		// Queued before the spool has it: the spool side must never meet
		// an entry whose live copy is still on its way in.
		c := liveCopy{n: n, b: &bus.Batch{Records: slices.Clone(b.Records)}, at: now}
		c.size = batchSize(c.b)
		l.live = append(l.live, c) // put numbers grow: it goes last
		l.bytes += c.size
		for l.bytes > int64(l.cfg.LiveBuffer) && len(l.live) > 1 {
			l.dropLive()
		}
		l.signal()
	}
	l.mu.Unlock()

	msg := bus.NewMessage(b)
	msg.Metadata.Set(MetaLive, l.epoch+":"+strconv.FormatUint(n, 10))
	err := l.q.publish(ctx, msg, m)
	if err != nil && tee {
		// Not spooled: the caller puts it again (under a new number). A
		// copy already delivered is a duplicate, which at-least-once allows.
		l.mu.Lock()
		if i, ok := l.findLive(n); ok {
			l.bytes -= l.live[i].size
			l.live = slices.Delete(l.live, i, i+1)
		}
		l.sent.del(n)
		l.mu.Unlock()
	}
	return err
}

// dropLive drops the oldest live copy; call with mu held.
func (l *LiveFirst) dropLive() {
	old := l.live[0]
	l.live[0] = liveCopy{}
	l.live = l.live[1:]
	l.bytes -= old.size
	l.stats.LiveDropped++
	l.droppedBurst++
}

// watchLink follows the sink's link while a runner runs (Run calls it):
// Put makes live copies only while the link is up, and when it comes back
// the copies made before it went (between its loss and the sink noticing)
// are backlog, not live.
func (l *LiveFirst) watchLink(ctx context.Context, env *connectors.Env) {
	l.mu.Lock()
	l.link = env.State()
	l.mu.Unlock()
	for {
		woken := env.Woken()
		select {
		case <-ctx.Done():
			return
		case <-woken:
		}
		if s := env.State().Snapshot(); s.Phase == connectors.PhaseUp {
			l.linkBack(s.Since)
		}
	}
}

// linkBack drops the live copies made before the link came back at t.
func (l *LiveFirst) linkBack(t time.Time) {
	l.mu.Lock()
	for len(l.live) > 0 && l.live[0].at.Before(t) {
		l.dropLive()
	}
	l.mu.Unlock()
}

// setBehind changes mode and says so; call with mu held.
func (l *LiveFirst) setBehind(on bool, why string) {
	l.behind = on
	l.stats.Behind = on
	if on {
		l.droppedBurst = 0
		l.logger.Info("live first: new data goes ahead of the backlog", "reason", why)
		return
	}
	l.logger.Info("live first: backlog drained, back to spool order", "reason", why,
		"live_copies_dropped", l.droppedBurst)
}

func (l *LiveFirst) findLive(n uint64) (int, bool) {
	return slices.BinarySearchFunc(l.live, n, func(c liveCopy, n uint64) int {
		switch {
		case c.n < n:
			return -1
		case c.n > n:
			return 1
		}
		return 0
	})
}

// receive takes a spool message in as the head; call with mu held.
func (l *LiveFirst) receive(msg *message.Message) {
	h := &spoolHead{msg: msg}
	if epoch, num, ok := strings.Cut(msg.Metadata.Get(MetaLive), ":"); ok && epoch == l.epoch {
		if n, err := strconv.ParseUint(num, 10, 64); err == nil {
			h.n, h.mine = n, true
			l.spoolN = max(l.spoolN, n)
		}
	}
	if !h.mine && !l.behind {
		// Spooled before this outlet was made (an earlier run): a
		// backlog by definition.
		l.setBehind(true, "a backlog from before the start")
	}
	l.head = h
}

// Next hands out a live copy or the spool's next entry, in the share.
func (l *LiveFirst) Next(ctx context.Context) (*Delivery, error) {
	msgs, err := l.q.subscription()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, ErrClosed
		}
		if l.head == nil {
			select {
			case msg, ok := <-msgs:
				if !ok {
					l.mu.Unlock()
					return nil, ErrClosed
				}
				l.receive(msg)
			default:
			}
		}
		for len(l.live) > 0 && time.Since(l.live[0].at) > l.cfg.LiveMaxAge.D() {
			l.dropLive()
		}
		spoolReady, stolen := false, false
		if h := l.head; h != nil {
			_, flying := l.flying[h.n]
			switch {
			case !h.mine:
				spoolReady = true
			case l.sent.has(h.n):
				// Its live copy was delivered: release it unsent.
				l.sent.del(h.n)
				l.head = nil
				l.stats.Skipped++
				h.msg.Ack()
				l.mu.Unlock()
				continue
			case flying:
				// Its live copy is out: wait for the verdict.
			default:
				if i, ok := l.findLive(h.n); ok {
					l.bytes -= l.live[i].size
					l.live = slices.Delete(l.live, i, i+1)
					stolen = true
				}
				spoolReady = true
			}
		}
		if stolen {
			// The head is the oldest live data still waiting: it goes now,
			// from the spool, in its place in the live order.
			d, err := l.handSpool(true)
			l.mu.Unlock()
			return d, err
		}
		liveReady := len(l.live) > 0
		if spoolReady && liveReady {
			// Both wait: keep live at its share of the records sent.
			share := l.cfg.LiveShare
			if float64(l.liveRecs)*(1-share) <= float64(l.backRecs)*share {
				d := l.handLive()
				l.liveRecs += int64(len(d.Batch.Records))
				l.mu.Unlock()
				return d, nil
			}
			d, err := l.handSpool(false)
			if d != nil {
				l.backRecs += int64(len(d.Batch.Records))
			}
			l.mu.Unlock()
			return d, err
		}
		if spoolReady {
			d, err := l.handSpool(false)
			l.mu.Unlock()
			return d, err
		}
		if liveReady {
			d := l.handLive()
			l.mu.Unlock()
			return d, nil
		}
		wait, recv := l.changed, msgs
		if l.head != nil {
			recv = nil // a head is in hand (waiting on its live copy): a nil channel is never ready
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		case msg, ok := <-recv:
			if !ok {
				return nil, ErrClosed
			}
			l.mu.Lock()
			l.receive(msg)
			l.mu.Unlock()
		}
	}
}

// handSpool hands out the head; call with mu held.
func (l *LiveFirst) handSpool(stolen bool) (*Delivery, error) {
	h := l.head
	l.head = nil
	// The backlog is done once the spool reaches what live sent and the
	// sink no longer lags: from here on spool order is also time order.
	if l.behind && h.mine && h.n > l.maxLive && l.putN-h.n < BehindAfter/2 {
		l.setBehind(false, "the spool caught up with live data")
	}
	backfill := l.behind && !stolen
	d, err := l.q.deliver(h.msg)
	if err != nil {
		return nil, err
	}
	d.Batch.Backfill = backfill
	if backfill {
		l.stats.Backfilled++
	}
	return d, nil
}

// handLive hands out the oldest live copy; call with mu held.
func (l *LiveFirst) handLive() *Delivery {
	c := l.live[0]
	l.live[0] = liveCopy{}
	l.live = l.live[1:]
	l.bytes -= c.size
	l.flying[c.n] = c.b
	l.maxLive = max(l.maxLive, c.n)
	var once sync.Once
	return &Delivery{
		Batch: c.b,
		ack: func() {
			once.Do(func() {
				l.mu.Lock()
				delete(l.flying, c.n)
				l.sent.set(c.n)
				l.stats.LiveSent++
				l.signal()
				l.mu.Unlock()
			})
		},
		nack: func() {
			once.Do(func() {
				l.mu.Lock()
				delete(l.flying, c.n)
				if !l.closed {
					i, _ := l.findLive(c.n)
					l.live = slices.Insert(l.live, i, c)
					l.bytes += c.size
				}
				l.signal()
				l.mu.Unlock()
			})
		},
	}
}

// Stats snapshots what the outlet holds and did.
func (l *LiveFirst) Stats() LiveFirstStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.LiveWaiting, s.LiveBytes = int64(len(l.live)), l.bytes
	return s
}

// Release ends the spool subscription (see Bus.Release); the head goes
// back to the spool with it.
func (l *LiveFirst) Release() {
	l.mu.Lock()
	if l.head != nil {
		l.head.msg.Nack()
		l.head = nil
	}
	l.mu.Unlock()
	l.q.Release()
}

// Close drops the live copies (the spool keeps every batch) and ends the
// spool subscription.
func (l *LiveFirst) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.live, l.bytes = nil, 0
		if l.head != nil {
			l.head.msg.Nack()
			l.head = nil
		}
		l.signal()
	}
	l.mu.Unlock()
	return l.q.Close()
}

// bitset is a sparse set of put numbers: a word per 64, so a long drain's
// worth of live deliveries costs bits, not map entries.
type bitset map[uint64]uint64

func (s *bitset) set(n uint64) {
	if *s == nil {
		*s = bitset{}
	}
	(*s)[n/64] |= 1 << (n % 64)
}

func (s bitset) has(n uint64) bool { return s[n/64]&(1<<(n%64)) != 0 }

func (s bitset) del(n uint64) {
	w, ok := s[n/64]
	if !ok {
		return
	}
	if w &^= 1 << (n % 64); w == 0 {
		delete(s, n/64)
	} else {
		s[n/64] = w
	}
}

var _ Queue = (*LiveFirst)(nil)
