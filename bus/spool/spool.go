package spool

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
)

// Metadata keys the spool reads. The router's outlets (router/outlet) set
// them on a sink's batches, using these names.
const (
	MetaPriority = "ferry-priority" // lane: an int, higher drains first; default 0
	MetaTTL      = "ferry-ttl"      // a Go duration after which the entry expires
)

// Errors.
var (
	ErrClosed      = errors.New("spool: closed")
	ErrWrongKey    = errors.New("spool: wrong encryption key")
	ErrKeyRequired = errors.New("spool: the spool is encrypted and no key_file is set")
	ErrLocked      = errors.New("spool: directory is in use by another process")
	ErrInUse       = errors.New("spool: directory is already open in this process with another configuration")
	ErrTooLarge    = errors.New("spool: message too large")
	ErrBadMetadata = errors.New("spool: bad message metadata")
	ErrFormat      = errors.New("spool: unknown on-disk format")
)

// Drop reasons, the reason label of ferry_spool_dropped_total.
const (
	reasonQuota   = "quota"
	reasonTTL     = "ttl"
	reasonCorrupt = "corrupt"
)

const formatVersion = 1

// meta is spool.meta: the format version and, for an encrypted spool, the
// key check value.
type meta struct {
	Format   int    `json:"format"`
	KeyCheck string `json:"key_check,omitempty"`
}

// Spool is a handle on a durable queue directory. It is a watermill
// Publisher and Subscriber. Opening a directory that is already open in
// this process gives another handle on the same store; Close closes the
// handle's subscriptions, and the store with the last handle.
type Spool struct {
	st      *store
	closing chan struct{}
	once    sync.Once
	subs    sync.WaitGroup
	closed  atomic.Bool
}

var (
	_ message.Publisher  = (*Spool)(nil)
	_ message.Subscriber = (*Spool)(nil)
)

// store is one open spool directory.
type store struct {
	cfg    Config
	dir    string
	logger *slog.Logger
	sealer *sealer
	maxAge int64
	lock   *os.File
	m      *metrics

	mu        sync.Mutex
	topics    map[string]*topic
	liveBytes int64 // bytes of entries not yet done
	reserved  int64 // bytes of entries on their way to the writer
	space     chan struct{}
	closed    bool
	refs      int
	recovered []Recovery
	dropped   map[string]int64
	syncDirs  map[string]bool // lane directories with a segment created since the last fsync
	trash     []*segment      // released segments the reaper closes and deletes
	reap      chan struct{}   // wakes the reaper; nil for a read-only store

	wh writeHealth

	qmu   sync.Mutex
	queue []*appendReq
	qsig  chan struct{}

	closing chan struct{}
	bg      sync.WaitGroup
	fsyncs  atomic.Int64 // group commits under "always", for benchmarks
	rolled  int64        // writer only: bytes sealed into segments in this round
}

var registry = struct {
	sync.Mutex
	m map[string]*store
}{m: map[string]*store{}}

// Open opens (creating if needed) the spool in cfg.Dir. It recovers each
// lane's last segment, cutting a torn tail and reporting it (see
// Recovered), and fails with ErrWrongKey if the key is not the one the
// spool was written with.
func Open(cfg Config, logger *slog.Logger) (*Spool, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	registry.Lock()
	defer registry.Unlock()
	st := registry.m[dir]
	if st != nil {
		if !sameConfig(st.cfg, cfg) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, dir)
		}
	} else {
		st, err = openStore(dir, cfg, logger.With("component", "spool", "sink", cfg.Name))
		if err != nil {
			return nil, err
		}
		registry.m[dir] = st
	}
	st.mu.Lock()
	st.refs++
	st.mu.Unlock()
	return &Spool{st: st, closing: make(chan struct{})}, nil
}

func sameConfig(a, b Config) bool {
	a.Registerer, b.Registerer = nil, nil
	a.Dir, b.Dir = "", ""
	return a == b
}

func openStore(dir string, cfg Config, logger *slog.Logger) (st *store, err error) {
	if err := os.MkdirAll(filepath.Join(dir, lanesDir), 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	st = &store{
		cfg: cfg, dir: dir, logger: logger, lock: lock,
		maxAge:   int64(cfg.MaxAge),
		topics:   map[string]*topic{},
		space:    make(chan struct{}),
		qsig:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		dropped:  map[string]int64{},
		syncDirs: map[string]bool{},
		reap:     make(chan struct{}, 1),
	}
	var key []byte
	if cfg.KeyFile != "" {
		if key, err = readKey(cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("spool: key_file: %w", err)
		}
		if st.sealer, err = newSealer(key); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	if err := st.checkMeta(key); err != nil {
		return nil, err
	}
	st.m = newMetrics(cfg.Registerer, cfg.Name, st)
	if err := st.load(true); err != nil {
		st.closeLanes()
		st.m.unregister()
		return nil, err
	}
	for _, r := range st.recovered {
		logDamage(st.logger, "spool: damage found on open", r)
		st.drop(reasonCorrupt, r.Records, r.Segment)
	}
	st.bg.Add(3)
	go st.writer()
	go st.housekeeper()
	go st.reaper()
	if cfg.Fsync == FsyncInterval {
		st.bg.Add(1)
		go st.syncer()
	}
	return st, nil
}

// checkMeta creates spool.meta, or checks the key against it. A spool
// written without a key may be given one: new entries are encrypted from
// then on, old ones stay readable. A damaged spool.meta is rebuilt from the
// segments (see rebuildMeta); one from a newer format is refused.
func (st *store) checkMeta(key []byte) error {
	path := filepath.Join(st.dir, metaName)
	m, b, damaged, err := readMeta(st.dir)
	if err != nil {
		return err
	}
	if damaged {
		if m, err = rebuildMeta(st.dir, st.sealer); err != nil {
			return err
		}
		r := Recovery{Kind: DamageMeta, Segment: path, Bytes: int64(len(b))}
		st.recovered = append(st.recovered, r)
		b = nil // written again below
	}
	switch {
	case m.KeyCheck != "" && key == nil:
		return fmt.Errorf("%w: %s", ErrKeyRequired, st.dir)
	case m.KeyCheck != "" && m.KeyCheck != keyCheck(key):
		return fmt.Errorf("%w: %s does not open the spool in %s", ErrWrongKey, st.cfg.KeyFile, st.dir)
	case m.KeyCheck == "" && key != nil:
		m.KeyCheck = keyCheck(key)
	case b != nil:
		return nil
	}
	nb, _ := json.Marshal(m)
	tmp := path + ".tmp"
	err = st.hookErr(opMeta, path)
	if err == nil {
		err = os.WriteFile(tmp, nb, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		// A full disk: the spool works without the file, which the next
		// open writes again.
		st.writeFailed(opMeta, path, err)
	}
	return nil
}

// readMeta reads spool.meta. damaged is true when it is there but not a
// spool.meta of any format (zeroed, cut short, garbage); a format other
// than this build's is an error.
func readMeta(dir string) (m meta, raw []byte, damaged bool, err error) {
	path := filepath.Join(dir, metaName)
	raw, err = os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return meta{Format: formatVersion}, nil, false, nil
	case err != nil:
		return m, nil, false, fmt.Errorf("spool: %w", err)
	}
	if json.Unmarshal(raw, &m) != nil || m.Format <= 0 || (m.KeyCheck != "" && !isHex(m.KeyCheck)) {
		return meta{}, raw, true, nil
	}
	if m.Format != formatVersion {
		return m, raw, false, fmt.Errorf("%w: %s (format %d, this build reads %d)", ErrFormat, path, m.Format, formatVersion)
	}
	return m, raw, false, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// rebuildMeta makes spool.meta again from the segments: the format, and
// for a spool whose entries are encrypted, the key check of the key that
// opens them (so a missing or wrong key still fails at open, as it would
// have with the file intact).
func rebuildMeta(dir string, sl *sealer) (meta, error) {
	m := meta{Format: formatVersion}
	enc, ok := sampleEncrypted(dir)
	switch {
	case !ok:
		return m, nil
	case sl == nil:
		return m, fmt.Errorf("%w: %s (its spool.meta was damaged; its entries are encrypted)", ErrKeyRequired, dir)
	}
	var hb [headerLen]byte
	enc.h.put(hb[:])
	var ad [28]byte
	if _, err := sl.open(enc.body, aad(ad[:0], hb[:])); err != nil {
		return m, fmt.Errorf("%w: it does not decrypt the entries of %s (its spool.meta was damaged)", ErrWrongKey, dir)
	}
	return m, nil
}

type sample struct {
	h    header
	body []byte
}

// sampleEncrypted finds an intact encrypted entry: the first of each
// lane's first segment, read until one is.
func sampleEncrypted(dir string) (sample, bool) {
	root := filepath.Join(dir, lanesDir)
	tdirs, _ := os.ReadDir(root)
	for _, td := range tdirs {
		ldirs, _ := os.ReadDir(filepath.Join(root, td.Name()))
		for _, ld := range ldirs {
			ldir := filepath.Join(root, td.Name(), ld.Name())
			bases, err := segBases(ldir)
			if err != nil {
				continue
			}
			for _, b := range bases {
				seg := &segment{base: b, path: filepath.Join(ldir, segName(b))}
				var r segReader
				h, body, ok, _ := r.readEntryAt(seg, fileHeaderLen, 1<<62)
				seg.close()
				if ok && h.flags&flagEncrypted != 0 {
					return sample{h, append([]byte(nil), body...)}, true
				}
				if ok {
					break // this lane's entries are in clear
				}
			}
		}
	}
	return sample{}, false
}

// load reads every lane directory.
func (st *store) load(repair bool) error {
	err := walkLanes(filepath.Join(st.dir, lanesDir), func(name string, prio int, dir string) error {
		recs, err := loadLane(st, st.topicLocked(name), prio, dir, repair)
		if err != nil {
			return fmt.Errorf("lane %s/%d: %w", name, prio, err)
		}
		st.recovered = append(st.recovered, recs...)
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// walkLanes calls fn for every lane directory under root (topic, then
// priority), skipping what is not a lane.
func walkLanes(root string, fn func(topic string, prio int, dir string) error) error {
	tdirs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, td := range tdirs {
		name, ok := unescapeTopic(td.Name())
		if !td.IsDir() || !ok {
			continue
		}
		ldirs, err := os.ReadDir(filepath.Join(root, td.Name()))
		if err != nil {
			return err
		}
		for _, ld := range ldirs {
			prio, ok := parseLaneDir(ld.Name())
			if !ld.IsDir() || !ok {
				continue
			}
			if err := fn(name, prio, filepath.Join(root, td.Name(), ld.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *store) topicLocked(name string) *topic {
	t := st.topics[name]
	if t == nil {
		t = &topic{name: name, wake: make(chan struct{})}
		st.topics[name] = t
	}
	return t
}

func (st *store) laneLocked(t *topic, prio int) *lane {
	if l := t.lane(prio); l != nil {
		return l
	}
	l := &lane{st: st, topic: t, prio: prio, nextSeq: 1,
		dir: filepath.Join(st.dir, lanesDir, escapeTopic(t.name), laneDirName(prio))}
	l.committed.nextSeq = 1
	t.addLane(l)
	return l
}

// maxNoted bounds the damage a store remembers (Stats.Recovered).
const maxNoted = 1000

// noteDamage records and logs damage found while reading. Under mu.
func (st *store) noteDamage(r Recovery) {
	if len(st.recovered) < maxNoted {
		st.recovered = append(st.recovered, r)
	}
	logDamage(st.logger, "spool: damage found while reading", r)
}

// logDamage logs one piece of damage with the seqs it cost.
func logDamage(l *slog.Logger, msg string, r Recovery) {
	attrs := []slog.Attr{slog.String("kind", r.Kind), slog.String("file", r.Segment),
		slog.Int64("offset", r.Offset), slog.Int64("bytes", r.Bytes), slog.Int64("entries_lost", r.Entries)}
	if r.Entries > 0 {
		attrs = append(attrs, slog.Uint64("first_seq", r.FirstSeq), slog.Uint64("last_seq", r.LastSeq),
			slog.Int64("records_lost", r.Records), slog.Bool("records_exact", r.RecordsExact))
	}
	if r.Truncated {
		attrs = append(attrs, slog.Bool("removed", true))
	}
	l.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// Recovered returns the damage found when the spool was opened, and while
// reading since (up to a thousand).
func (s *Spool) Recovered() []Recovery {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return append([]Recovery(nil), s.st.recovered...)
}

// pendingItem is one encoded entry on its way to the writer.
type pendingItem struct {
	lane *lane
	buf  []byte // header and body; the writer stamps the seq
	h    header
}

type appendReq struct {
	items []pendingItem
	bytes int64
	err   error
	done  chan struct{}
}

// Publish appends messages to their lanes (by the ferry-priority metadata)
// in order. It returns once they are written (under fsync "always", once
// they are on stable storage). When the quota is reached it drops the
// oldest entries or, with on_full "block", waits until there is room, the
// first message's context ends or the spool closes.
func (s *Spool) Publish(topicName string, msgs ...*message.Message) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	st := s.st
	now := st.now().UnixNano()
	req := &appendReq{items: make([]pendingItem, len(msgs)), done: make(chan struct{})}
	prios := make([]int, len(msgs))
	for i, m := range msgs {
		prio, ttl, err := laneOf(m)
		if err != nil {
			return err
		}
		prios[i] = prio
		it, err := st.encode(m, now, ttl)
		if err != nil {
			return err
		}
		req.items[i] = it
		req.bytes += int64(len(it.buf))
	}
	if req.bytes > int64(st.cfg.Quota) {
		return fmt.Errorf("%w: %d bytes exceed the quota of %s", ErrTooLarge, req.bytes, st.cfg.Quota)
	}
	ctx := msgs[0].Context()
	st.mu.Lock()
	for {
		if st.closed {
			st.mu.Unlock()
			return ErrClosed
		}
		if st.liveBytes+st.reserved+req.bytes <= int64(st.cfg.Quota) {
			break
		}
		if st.cfg.OnFull == Block {
			space := st.space
			st.mu.Unlock()
			select {
			case <-space:
			case <-ctx.Done():
				return fmt.Errorf("spool: waiting for room: %w", ctx.Err())
			case <-st.closing:
				return ErrClosed
			case <-s.closing:
				return ErrClosed
			}
			st.mu.Lock()
			continue
		}
		if !st.dropOldest(st.liveBytes + st.reserved + req.bytes - int64(st.cfg.Quota)) {
			break // everything left is in flight: go over by that much
		}
	}
	st.reserved += req.bytes
	t := st.topicLocked(topicName)
	for i := range req.items {
		req.items[i].lane = st.laneLocked(t, prios[i])
	}
	st.mu.Unlock()

	st.qmu.Lock()
	st.queue = append(st.queue, req)
	st.qmu.Unlock()
	select {
	case st.qsig <- struct{}{}:
	default:
	}
	<-req.done
	return req.err
}

// laneOf reads the lane and TTL metadata.
func laneOf(m *message.Message) (prio int, ttl time.Duration, err error) {
	if v := m.Metadata.Get(MetaPriority); v != "" {
		if prio, err = strconv.Atoi(v); err != nil {
			return 0, 0, fmt.Errorf("%w: message %s: %s %q is not an integer", ErrBadMetadata, m.UUID, MetaPriority, v)
		}
	}
	if v := m.Metadata.Get(MetaTTL); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl < 0 {
			return 0, 0, fmt.Errorf("%w: message %s: %s %q is not a duration such as 30s or 1h", ErrBadMetadata, m.UUID, MetaTTL, v)
		}
	}
	return prio, ttl, nil
}

var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// encode builds an entry: header (seq to be stamped) and body.
func (st *store) encode(m *message.Message, now int64, ttl time.Duration) (pendingItem, error) {
	h := header{kind: kindMessage, time: now, records: 1}
	if ttl > 0 {
		h.expiry = now + int64(ttl)
	}
	if n, err := bus.CountRecords(m.Payload); err == nil {
		h.records = uint32(n)
	}
	bodyMax := clearBodyLen(m)
	if st.sealer == nil {
		buf := make([]byte, headerLen, headerLen+bodyMax)
		buf = appendClearBody(buf, m)
		h.bodyLen = uint32(len(buf) - headerLen)
		h.bodyCRC = crc(buf[headerLen:])
		h.put(buf)
		return st.checkSize(pendingItem{buf: buf, h: h}, m)
	}
	h.flags = flagEncrypted
	sp := scratch.Get().(*[]byte)
	clearBody := appendClearBody((*sp)[:0], m)
	var hb [headerLen]byte
	h.put(hb[:])
	var ad [28]byte
	buf := make([]byte, headerLen, headerLen+nonceLen+len(clearBody)+tagLen)
	buf = st.sealer.seal(buf, clearBody, aad(ad[:0], hb[:]))
	*sp = clearBody[:0]
	scratch.Put(sp)
	h.bodyLen = uint32(len(buf) - headerLen)
	h.bodyCRC = crc(buf[headerLen:])
	h.put(buf)
	return st.checkSize(pendingItem{buf: buf, h: h}, m)
}

func (st *store) checkSize(it pendingItem, m *message.Message) (pendingItem, error) {
	if limit := int64(st.cfg.SegmentSize) - fileHeaderLen - sealLen; int64(len(it.buf)) > limit {
		return it, fmt.Errorf("%w: message %s takes %d bytes, a segment holds at most %d (segment_size %s)", ErrTooLarge, m.UUID, len(it.buf), limit, st.cfg.SegmentSize)
	}
	return it, nil
}

// decode fills a handed-out entry's message from its body.
func (st *store) decode(e *entry, body []byte) error {
	if e.h.flags&flagEncrypted != 0 {
		if st.sealer == nil {
			return ErrKeyRequired
		}
		var hb [headerLen]byte
		e.h.put(hb[:])
		var ad [28]byte
		clearBody, err := st.sealer.open(body, aad(ad[:0], hb[:]))
		if err != nil {
			return err
		}
		body = clearBody
	}
	var err error
	e.uuid, e.md, e.payload, err = decodeBody(body)
	return err
}

// now is the spool's clock: time.Now, or a test's.
func (st *store) now() time.Time {
	if st.cfg.clock != nil {
		return st.cfg.clock.Now()
	}
	return time.Now()
}

func (st *store) expired(h *header, now int64) bool {
	return (h.expiry != 0 && now >= h.expiry) || (st.maxAge > 0 && now-h.time >= st.maxAge)
}

// dropOldest drops the oldest entry not in flight of the lowest-priority
// lane that has one (over all topics), need being how many bytes must go.
// Under mu.
func (st *store) dropOldest(need int64) bool {
	var lanes []*lane
	for _, t := range st.topics {
		lanes = append(lanes, t.lanes...)
	}
	for len(lanes) > 0 {
		best := 0
		for i, l := range lanes {
			b := lanes[best]
			if l.prio < b.prio || (l.prio == b.prio && l.headTime() < b.headTime()) {
				best = i
			}
		}
		if lanes[best].skipOldest(need) {
			return true
		}
		lanes = append(lanes[:best], lanes[best+1:]...)
	}
	return false
}

// headTime orders lanes of one priority for drop-oldest, without reading.
func (l *lane) headTime() int64 {
	if len(l.redo) > 0 {
		return l.redo[0].h.time
	}
	if l.cur != nil && l.cur.sum.entries > 0 {
		return l.cur.sum.firstTime
	}
	return 1<<63 - 1
}

// spaceFreed wakes publishers waiting for room. Under mu.
func (st *store) spaceFreed() {
	if st.cfg.OnFull == Block {
		close(st.space)
		st.space = make(chan struct{})
	}
}

// drop counts dropped records. Under mu.
func (st *store) drop(reason string, records int64, where string) {
	if records <= 0 {
		return
	}
	st.dropped[reason] += records
	st.m.dropped(reason, records)
	st.m.burst(reason).Log(st.logger, slog.LevelWarn, "spool: dropped records",
		slog.String("reason", reason), slog.Int64("records", records), slog.String("segment", where),
		slog.Int64("total", st.dropped[reason]))
}

func (st *store) ioError(op, path string, err error) {
	st.m.ioBurst.Log(st.logger, slog.LevelWarn, "spool: i/o error", slog.String("op", op), slog.String("path", path), slog.Any("error", err))
}

// Write operations, as the write hook and the logs name them.
const (
	opCreate     = "create"
	opAppend     = "append"
	opSeal       = "seal"
	opTruncate   = "truncate"
	opCheckpoint = "checkpoint"
	opMeta       = "meta"
	opFsync      = "fsync"
)

func hookErr(h *hooks, op, path string) error {
	if h != nil && h.write != nil {
		return h.write(op, path)
	}
	return nil
}

func (st *store) hookErr(op, path string) error { return hookErr(st.cfg.hooks, op, path) }

// writeHealth is the state of the spool's writes: failing from the first
// write error until the kind of write that failed last, or an append,
// succeeds again.
// Each change is logged once, whatever the rate of errors in between.
type writeHealth struct {
	mu      sync.Mutex
	failing bool
	op      string    // the write that failed last
	since   time.Time // when writes started failing
	total   int64     // write errors since open
	burst   int64     // since writes started failing
	last    string
	lastAt  time.Time
}

// writeFailed records a failed write: counted, in Stats, and logged when
// writes start failing.
func (st *store) writeFailed(op, path string, err error) {
	now := time.Now()
	w := &st.wh
	w.mu.Lock()
	w.total++
	w.burst++
	w.op, w.last, w.lastAt = op, err.Error(), now
	start := !w.failing
	if start {
		w.failing, w.since = true, now
	}
	w.mu.Unlock()
	st.m.writeError()
	if start {
		st.logger.Warn("spool: writes failing; publishers get errors until they succeed again",
			"op", op, "path", path, "error", err)
	}
}

// writeOK records a successful write of kind op, which ends a failure of
// that kind; a successful append round ends any (space is back).
func (st *store) writeOK(op string) {
	w := &st.wh
	w.mu.Lock()
	if !w.failing || (w.op != op && op != opAppend) {
		w.mu.Unlock()
		return
	}
	n, d := w.burst, time.Since(w.since)
	w.failing, w.burst = false, 0
	w.mu.Unlock()
	st.logger.Info("spool: writes recovered", "op", op, "errors", n, "failing_for", d.Round(time.Millisecond))
}

// writer appends what publishers queue, many requests per write and fsync:
// the group commit.
func (st *store) writer() {
	defer st.bg.Done()
	for {
		closing := false
		select {
		case <-st.qsig:
		case <-st.closing:
			closing = true
		}
		st.qmu.Lock()
		q := st.queue
		st.queue = nil
		st.qmu.Unlock()
		if len(q) > 0 {
			st.writeRound(q)
		}
		if closing {
			return
		}
	}
}

func (st *store) writeRound(reqs []*appendReq) {
	var touched []*lane
	seen := map[*lane]bool{}
	var err error
	for _, r := range reqs {
		for i := range r.items {
			it := &r.items[i]
			l := it.lane
			if !seen[l] {
				seen[l] = true
				touched = append(touched, l)
			}
			if err == nil {
				err = st.stage(l, it)
			}
		}
	}
	for _, l := range touched {
		if err == nil {
			err = st.flush(l)
		}
	}
	if err == nil && st.cfg.Fsync == FsyncAlways {
		for _, l := range touched {
			if l.w != nil && l.w.dirty.Swap(false) {
				if err = l.w.f.Sync(); err != nil {
					break
				}
				st.fsyncs.Add(1)
			}
		}
	}
	st.mu.Lock()
	for _, l := range touched {
		if err != nil {
			st.rollback(l)
		} else {
			st.commit(l)
		}
		l.staged = l.staged[:0]
		l.wbuf = l.wbuf[:0]
		if cap(l.wbuf) > 1<<20 {
			l.wbuf = nil
		}
	}
	var total int64
	for _, r := range reqs {
		total += r.bytes
	}
	st.reserved -= total
	if err == nil {
		st.liveBytes += total
	} else {
		// Entries sealed into a segment before the round failed stay
		// (their publishers get the error and may send them again).
		st.liveBytes += st.rolled
		st.spaceFreed()
	}
	st.rolled = 0
	st.mu.Unlock()
	if err != nil {
		st.writeFailed(opAppend, "", err)
		err = fmt.Errorf("spool: append: %w", err)
	} else {
		st.writeOK(opAppend)
	}
	for _, r := range reqs {
		r.err = err
		close(r.done)
	}
}

// stage adds an entry to its lane's write buffer, sealing the active
// segment first when the entry would not fit in it. Writer only.
func (st *store) stage(l *lane, it *pendingItem) error {
	size := int64(len(it.buf))
	if l.w != nil && l.w.wsum.entries > 0 && l.w.wsize+int64(len(l.wbuf))+size+sealLen > int64(st.cfg.SegmentSize) {
		if err := st.roll(l); err != nil {
			return err
		}
	}
	if l.w == nil {
		if err := os.MkdirAll(l.dir, 0o750); err != nil {
			return err
		}
		// Under "always" the new file and its directory entry are made
		// durable before any entry in it is acknowledged; under "interval"
		// the syncer does it on its next tick.
		seg, err := st.createSegment(l.dir, l.nextSeq, st.cfg.Fsync == FsyncAlways)
		if err != nil {
			return err
		}
		st.mu.Lock()
		if st.cfg.Fsync == FsyncInterval {
			st.syncDirs[l.dir] = true
		}
		l.segs = append(l.segs, seg)
		l.w = seg
		l.committed.wsize, l.committed.wsum = seg.wsize, seg.wsum
		l.topic.signal()
		st.mu.Unlock()
	}
	setSeq(it.buf, l.nextSeq)
	it.h.seq = l.nextSeq
	l.nextSeq++
	l.wbuf = append(l.wbuf, it.buf...)
	l.staged = append(l.staged, it)
	return nil
}

// flush writes a lane's buffer to its active segment. Writer only.
func (st *store) flush(l *lane) error {
	if len(l.wbuf) == 0 {
		return nil
	}
	if err := st.hookErr(opAppend, l.w.path); err != nil {
		return err
	}
	if _, err := l.w.f.WriteAt(l.wbuf, l.w.wsize); err != nil {
		return err
	}
	l.w.wsize += int64(len(l.wbuf))
	for _, it := range l.staged {
		l.w.wsum.add(&it.h)
	}
	l.w.dirty.Store(true)
	l.wbuf = l.wbuf[:0]
	l.staged = l.staged[:0]
	return nil
}

// roll seals the active segment: the entries staged so far go first, then
// the seal with the segment's summary, then an fsync (unless "never"). The
// next entry starts a new segment. Writer only.
func (st *store) roll(l *lane) error {
	if err := st.flush(l); err != nil {
		return err
	}
	w := l.w
	if err := st.hookErr(opSeal, w.path); err != nil {
		return err
	}
	if _, err := w.f.WriteAt(sealEntry(&w.wsum, st.now().UnixNano()), w.wsize); err != nil {
		return err
	}
	if st.cfg.Fsync != FsyncNever {
		// The entries are already on disk under "always" (each round
		// fsyncs) and within the loss window under "interval"; the seal
		// only spares a scan on open. Syncing it in the background keeps
		// a 16MiB fsync out of every publisher's way.
		f := w.f
		st.bg.Add(1)
		go func() {
			defer st.bg.Done()
			if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				st.writeFailed(opFsync, f.Name(), err)
			}
		}()
	}
	st.rolled += w.wsum.bytes - l.committed.wsum.bytes
	st.mu.Lock()
	w.size, w.sum, w.sealed = w.wsize, w.wsum, true
	l.w = nil
	l.committed.nextSeq = l.nextSeq
	l.topic.signal()
	st.mu.Unlock()
	return nil
}

// commit publishes what the writer wrote to readers. Under mu.
func (st *store) commit(l *lane) {
	if l.w != nil {
		l.w.size, l.w.sum = l.w.wsize, l.w.wsum
		l.committed.wsize, l.committed.wsum = l.w.wsize, l.w.wsum
	}
	l.committed.nextSeq = l.nextSeq
	l.topic.signal()
}

// rollback forgets what a failed round wrote past the committed end; the
// next round writes over it. Under mu.
func (st *store) rollback(l *lane) {
	if l.w != nil {
		l.w.wsize, l.w.wsum = l.committed.wsize, l.committed.wsum
	}
	l.nextSeq = l.committed.nextSeq
}

// syncer fsyncs written segments every interval, for the "interval" policy.
func (st *store) syncer() {
	defer st.bg.Done()
	tick := time.NewTicker(st.cfg.FsyncInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			st.syncAll()
		case <-st.closing:
			return
		}
	}
}

func (st *store) syncAll() {
	var files []*os.File
	st.mu.Lock()
	dirs := st.syncDirs
	st.syncDirs = map[string]bool{}
	for _, t := range st.topics {
		for _, l := range t.lanes {
			if w := l.w; w != nil && w.dirty.Swap(false) {
				files = append(files, w.f)
			}
		}
	}
	st.mu.Unlock()
	for _, f := range files {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			st.writeFailed(opFsync, f.Name(), err)
		}
	}
	for d := range dirs {
		if err := fsyncDir(d); err != nil {
			st.ioError("fsync", d, err)
		}
	}
}

// housekeeper expires entries at lane heads and writes head files.
func (st *store) housekeeper() {
	defer st.bg.Done()
	every := min(st.cfg.checkpointEvery, time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			st.expire(st.now().UnixNano())
			st.writeCheckpoints()
		case <-st.closing:
			return
		}
	}
}

// expire drops expired entries at the head of every lane. A lane whose
// reader is busy is left for the next tick: the reader expires what it
// meets, and the housekeeper must not wait behind a slow disk.
func (st *store) expire(now int64) {
	st.mu.Lock()
	var lanes []*lane
	for _, t := range st.topics {
		lanes = append(lanes, t.lanes...)
	}
	for _, l := range lanes {
		if !l.rmu.TryLock() {
			continue
		}
		l.expireHead(now, 10000)
		if len(l.inflight) == 0 && len(l.redo) == 0 {
			l.rd.release()
		}
		l.rmu.Unlock()
	}
	st.mu.Unlock()
}

// discard hands a released segment to the reaper, so that closing and
// deleting its file happen without store.mu. Under store.mu.
func (st *store) discard(s *segment) {
	st.trash = append(st.trash, s)
	select {
	case st.reap <- struct{}{}:
	default:
	}
}

// reaper deletes released segments.
func (st *store) reaper() {
	defer st.bg.Done()
	for {
		select {
		case <-st.reap:
			st.reapNow()
		case <-st.closing:
			st.reapNow()
			return
		}
	}
}

func (st *store) reapNow() {
	st.mu.Lock()
	segs := st.trash
	st.trash = nil
	st.mu.Unlock()
	for _, s := range segs {
		s.retire()
		if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
			st.ioError("release", s.path, err)
		}
	}
}

func (st *store) writeCheckpoints() {
	type job struct {
		l *lane
		c checkpoint
	}
	var jobs []job
	st.mu.Lock()
	for _, t := range st.topics {
		for _, l := range t.lanes {
			l.advance()
			if l.dirty && len(l.segs) > 0 {
				c := l.frontier()
				jobs = append(jobs, job{l, c})
				l.ckpt, l.dirty = c, false
			}
		}
	}
	st.mu.Unlock()
	for _, j := range jobs {
		err := st.hookErr(opCheckpoint, j.l.dir)
		if err == nil {
			err = writeCheckpoint(j.l.dir, j.c)
		}
		if err != nil {
			st.writeFailed(opCheckpoint, j.l.dir, err)
			st.mu.Lock()
			j.l.dirty = true // written again on the next tick
			st.mu.Unlock()
			continue
		}
		st.writeOK(opCheckpoint)
	}
}

// Close closes the handle: its subscriptions end, their channels close and
// what they had not acknowledged is delivered again. The last handle's
// Close writes what is queued, fsyncs (unless "never"), writes the head
// files and releases the directory. Close is idempotent.
func (s *Spool) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		s.subs.Wait()
		registry.Lock()
		defer registry.Unlock()
		st := s.st
		st.mu.Lock()
		st.refs--
		last := st.refs == 0
		st.mu.Unlock()
		if last {
			delete(registry.m, st.dir)
			err = st.close()
		}
	})
	return err
}

func (st *store) close() error {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	close(st.closing)
	st.bg.Wait()
	var errs []error
	st.mu.Lock()
	for _, t := range st.topics {
		for _, l := range t.lanes {
			if w := l.w; w != nil && st.cfg.Fsync != FsyncNever && w.dirty.Swap(false) {
				if err := w.f.Sync(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	st.mu.Unlock()
	st.writeCheckpoints()
	st.reapNow()
	st.closeLanes()
	st.m.unregister()
	if err := st.lock.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

func (st *store) closeLanes() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, t := range st.topics {
		for _, l := range t.lanes {
			for _, s := range l.segs {
				s.close()
			}
			l.rd.release()
		}
	}
	for _, s := range st.trash {
		s.close()
	}
}

// next blocks until an entry of the topic can be handed out, highest lane
// first, and returns it in flight; nil when ctx ends or the spool closes.
// The disk read and decryption happen without store.mu (see readNext).
func (st *store) next(ctx context.Context, t *topic, closing <-chan struct{}) *entry {
	for {
		st.mu.Lock()
		if st.closed {
			st.mu.Unlock()
			return nil
		}
		// Taken before looking: whatever is appended from now on closes it.
		wake := t.wake
		now := st.now().UnixNano()
		// t.lanes may grow while store.mu is let go; a lane missed for
		// that has a commit coming that closes wake.
		for i := 0; i < len(t.lanes); i++ {
			l := t.lanes[i]
			if e := l.takeRedo(now); e != nil {
				st.mu.Unlock()
				return e
			}
			if !l.unread() {
				l.advance()
				continue
			}
			l.lockRead()
			e := l.take(now)
			l.rmu.Unlock()
			if e != nil {
				st.mu.Unlock()
				return e
			}
		}
		st.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		case <-closing:
			return nil
		case <-st.closing:
			return nil
		}
	}
}

func (st *store) ack(e *entry) {
	st.mu.Lock()
	e.lane.ack(e)
	st.mu.Unlock()
}

func (st *store) nack(e *entry) {
	st.mu.Lock()
	e.lane.nack(e)
	st.mu.Unlock()
}
