package opcua

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// Server is a running OPC UA simulator. Its methods are safe for concurrent
// use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	cert  Certificate
	plant *plant

	life   sync.Mutex // serialises Restart and Close
	closed bool
	px     proxy
	extra  atomic.Int32 // empty namespaces registered before Plant at the next start
	cur    atomic.Pointer[generation]

	notifyMu sync.Mutex // serialises value changes and their notifications
	gen      atomic.Uint64

	stall atomic.Bool
	cnt   counters

	faultMu sync.Mutex // HoldPublish and LosePublish
	holding bool
	held    []heldResp
	lose    int
	subIDs  atomic.Uint32 // subscription ids, never reused

	ev        evState       // events, the condition and method calls (events.go)
	params    sync.Map      // node path → *ua.MonitoringParameters last requested
	evItemIDs atomic.Uint32 // event monitored item ids, never reused

	stopTick chan struct{}
	wg       sync.WaitGroup
	stopCtx  func() bool
}

// Start builds the address space, listens on cfg.Addr and serves until
// Close is called or ctx is done. It logs the endpoint.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, stopTick: make(chan struct{})}
	s.extra.Store(int32(cfg.ExtraNamespaces))
	if cfg.Certificate != nil {
		s.cert = *cfg.Certificate
	} else if !cfg.NoSecurity {
		c, err := sharedCertificate()
		if err != nil {
			return nil, fmt.Errorf("opcua sim: certificate: %w", err)
		}
		s.cert = c
	}
	s.plant = newPlant(cfg.Tags, cfg.PerLine)
	now := time.Now()
	for _, n := range s.plant.vars {
		s.setAt(n, 0, ua.StatusOK, now)
	}
	if err := s.px.listen(ctx, s, true); err != nil {
		return nil, err
	}
	if err := s.startGeneration(ctx, true); err != nil {
		s.px.stop()
		return nil, err
	}
	if cfg.Interval > 0 {
		s.wg.Add(1)
		go s.tick(cfg.Interval)
	}
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

// Addr returns host:port of the listener, with the real port when
// Config.Addr asked for port 0; it stays the same across Restart.
func (s *Server) Addr() string { return s.px.address() }

// Endpoint returns the opc.tcp URL of the server.
func (s *Server) Endpoint() string { return "opc.tcp://" + s.Addr() }

// Certificate returns the server's application instance certificate (DER).
func (s *Server) Certificate() []byte { return s.cert.DER }

// NamespaceURI returns the URI of the Plant namespace.
func (s *Server) NamespaceURI() string { return s.cfg.NamespaceURI }

// NamespaceIndex returns the index of the Plant namespace in the running
// server (it changes across restarts when SetExtraNamespaces is used).
func (s *Server) NamespaceIndex() uint16 {
	if g := s.cur.Load(); g != nil {
		return g.ns.idx
	}
	return uint16(1 + s.extra.Load())
}

// Tags returns the number of line variables.
func (s *Server) Tags() int { return s.plant.lines }

// Tag returns the path of line variable i (0-based), e.g. Plant/Line01/V00001.
func (s *Server) Tag(i int) string { return s.plant.vars[i].path }

// NodeID returns the NodeId string of a node path in the running server:
// ns=<index>;s=<path>.
func (s *Server) NodeID(path string) string {
	return "ns=" + strconv.Itoa(int(s.NamespaceIndex())) + ";s=" + path
}

// NodeIDURI returns the NodeId of a path with the namespace URI, which does
// not change across restarts: nsu=<uri>;s=<path>.
func (s *Server) NodeIDURI(path string) string { return "nsu=" + s.cfg.NamespaceURI + ";s=" + path }

// Generation returns how many Ticks the values went through.
func (s *Server) Generation() uint64 { return s.gen.Load() }

// SetExtraNamespaces sets how many empty namespaces are registered before
// the Plant namespace from the next Restart on, so that its index changes
// the way it can on a real server after an upgrade.
func (s *Server) SetExtraNamespaces(n int) { s.extra.Store(int32(n)) }

// Tick advances every line and Types variable to the next generation and
// notifies subscribers. Values are set and notified in chunks, each chunk
// stamped with the time it was set, so a source timestamp is never older
// than the moment its notification left.
func (s *Server) Tick() {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	gen := s.gen.Add(1)
	vars := s.plant.vars
	const chunk = 1000
	for start := 0; start < len(vars); start += chunk {
		part := vars[start:min(start+chunk, len(vars))]
		now := time.Now()
		for _, n := range part {
			if n.writable || n.path == LimitPath {
				continue
			}
			s.setAt(n, gen, ua.StatusCode(n.status.Load()), now)
		}
		if g := s.cur.Load(); g != nil {
			g.notify(part)
		}
	}
}

func (s *Server) tick(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-t.C:
			s.Tick()
		}
	}
}

func (s *Server) setAt(n *node, gen uint64, status ua.StatusCode, now time.Time) {
	va, err := ua.NewVariant(n.valueAt(gen))
	if err != nil {
		panic(fmt.Sprintf("opcua sim: %s: %v", n.path, err))
	}
	n.set(va, status, now)
}

func (s *Server) variable(path string) (*node, error) {
	n := s.plant.byPath[splitPath(path)]
	if n == nil || n.class != ua.NodeClassVariable {
		return nil, fmt.Errorf("%w: %s", ErrUnknownNode, path)
	}
	return n, nil
}

// SetValue sets a variable (by path or NodeId string) to v, which must have
// the variable's type (float64 for Double, int32 for Int32, …), and
// notifies subscribers. It is safe before the first client connects and
// while the server restarts.
func (s *Server) SetValue(path string, v any) error {
	n, err := s.variable(path)
	if err != nil {
		return err
	}
	va, err := variant(n.kind, v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s.store(n, va, ua.StatusCode(n.status.Load()))
	return nil
}

// RemoveNode makes a variable (by path or NodeId string) vanish from the
// address space at runtime, as a server reconfigured by its PLC program
// would: Browse no longer lists it, and Read and new monitored items get
// BadNodeIdUnknown. AddNode brings it back. The address space keeps its
// shape underneath (see the namespace's comment), so a node to be added
// while a client runs is a line variable removed before.
func (s *Server) RemoveNode(path string) error { return s.showNode(path, false) }

// AddNode makes a variable removed by RemoveNode appear again.
func (s *Server) AddNode(path string) error { return s.showNode(path, true) }

func (s *Server) showNode(path string, show bool) error {
	n, err := s.variable(path)
	if err != nil {
		return err
	}
	n.hidden.Store(!show)
	return nil
}

// SetStatus makes a variable report status code (keeping its value), as a
// device whose sensor failed would; ua.StatusOK restores it.
func (s *Server) SetStatus(path string, code ua.StatusCode) error {
	n, err := s.variable(path)
	if err != nil {
		return err
	}
	n.status.Store(uint32(code))
	s.store(n, n.value.Load().Value, code)
	return nil
}

// Value returns the current value and status of a variable.
func (s *Server) Value(path string) (any, ua.StatusCode, error) {
	n, err := s.variable(path)
	if err != nil {
		return nil, 0, err
	}
	d := n.value.Load()
	return d.Value.Value(), d.Status, nil
}

func (s *Server) store(n *node, va *ua.Variant, status ua.StatusCode) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	n.set(va, status, time.Now())
	if g := s.cur.Load(); g != nil {
		g.notify([]*node{n})
	}
}

// StallPublish makes the server swallow Publish requests (no response, no
// error, the TCP connection stays open) while on is true: a server whose
// subscription engine hangs. Other services keep working.
func (s *Server) StallPublish(on bool) { s.stall.Store(on) }

// MalformNext garbles the body of the next message the server sends on any
// connection; clients must survive it.
func (s *Server) MalformNext() { s.px.malform.Store(true) }

// DropConnections closes every client connection now, as a network blip
// would; the server, its sessions and subscriptions stay.
func (s *Server) DropConnections() { s.px.dropConnections() }

// DropSessions makes the server forget every session it has, as a server
// does when its session table is reset: the clients' next requests get
// BadSessionIdInvalid and their subscriptions are deleted. Connections stay
// open.
func (s *Server) DropSessions() {
	if g := s.cur.Load(); g != nil {
		g.dropAll()
	}
}

// Close stops the server and the value ticker. It is safe to call more
// than once.
func (s *Server) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stopTick)
	if s.stopCtx != nil {
		s.stopCtx()
	}
	s.px.stop()
	s.stopGeneration()
	s.wg.Wait()
	s.log.Info("opcua sim stopped", "endpoint", s.Endpoint())
	return nil
}

// Restart stops the server, closing every connection and forgetting every
// session and subscription, and starts it again on the same address with
// the same values, as a server process restart would. ctx bounds the wait
// for the port. It returns ErrClosed after Close.
func (s *Server) Restart(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.px.stop()
	s.stopGeneration()
	s.cnt.restarts.Add(1)
	if err := s.startGeneration(ctx, false); err != nil {
		return err
	}
	return s.px.listen(ctx, s, false)
}

func (s *Server) stopGeneration() {
	g := s.cur.Swap(nil)
	if g == nil {
		return
	}
	// Wait for a notification that still holds the old generation.
	s.notifyMu.Lock()
	//lint:ignore SA2001 an empty critical section is the point: a barrier
	s.notifyMu.Unlock()
	_ = g.srv.Close()
	g.cancel()
	s.cnt.resetActive()
	// Stop the old subscriptions' goroutines. gopcua's own initial
	// notifications can hold its monitored-item lock while blocked on a
	// subscription that is gone, so never wait for this.
	go g.deleteSubscriptions(func(*server.Subscription) bool { return true })
}

// startGeneration creates a gopcua server with the Plant namespace and the
// simulator's service handlers on an internal loopback port; the proxy
// forwards the public address to it.
func (s *Server) startGeneration(ctx context.Context, first bool) error {
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		g, err := s.newGeneration(port)
		if err != nil {
			return err
		}
		gctx, cancel := context.WithCancel(context.Background())
		g.ctx, g.cancel = gctx, cancel
		err = g.srv.Start(gctx)
		if err == nil {
			s.cur.Store(g)
			if first {
				s.log.Info("opcua sim listening", "endpoint", s.Endpoint(), "tags", s.plant.lines, "namespace", g.ns.idx)
			} else {
				s.log.Info("opcua sim listening again", "endpoint", s.Endpoint(), "namespace", g.ns.idx)
			}
			return nil
		}
		cancel()
		if !errors.Is(err, syscall.EADDRINUSE) || attempt > 20 || ctx.Err() != nil {
			return fmt.Errorf("opcua sim: start: %w", err)
		}
	}
}

// freePort returns a loopback port that was free a moment ago. gopcua's
// server binds from its endpoint URL and does not say which port it got.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("opcua sim: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) newGeneration(port int) (*generation, error) {
	opts := []server.Option{
		server.EndPoint("127.0.0.1", port),
		server.ServerName("ferry OPC UA simulator"),
		server.ManufacturerName("ferry"),
		server.ProductName("ferry sim opcua"),
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
	}
	if !s.cfg.DenyAnonymous {
		opts = append(opts, server.EnableAuthMode(ua.UserTokenTypeAnonymous))
	}
	if !s.cfg.NoSecurity {
		opts = append(opts,
			server.PrivateKey(s.cert.Key),
			server.Certificate(s.cert.DER),
			server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSign),
			server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt),
			server.EnableSecurity("Aes128_Sha256_RsaOaep", ua.MessageSecurityModeSignAndEncrypt),
			server.EnableSecurity("Aes256_Sha256_RsaPss", ua.MessageSecurityModeSignAndEncrypt),
		)
	}
	if len(s.cfg.Users) > 0 {
		opts = append(opts, server.EnableAuthMode(ua.UserTokenTypeUserName))
	}
	if len(s.cfg.UserCertificates) > 0 {
		opts = append(opts, server.EnableAuthMode(ua.UserTokenTypeCertificate))
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		opts = append(opts, server.SetLogger(printfLogger{s.log}))
	}
	srv := server.New(opts...)
	g := &generation{s: s, srv: srv, internal: "opc.tcp://127.0.0.1:" + strconv.Itoa(port), live: map[string]bool{}, dropped: map[string]bool{}, dead: map[*server.Subscription]bool{}}
	g.pub.queues, g.pub.subs = map[string]chan pubReq{}, map[uint32]*simSub{}
	for i := range int(s.extra.Load()) {
		server.NewNodeNameSpace(srv, fmt.Sprintf("urn:ferry:sim:empty:%d", i+1))
	}
	g.ns = &nsView{p: s.plant, uri: s.cfg.NamespaceURI, g: g}
	srv.AddNamespace(g.ns)
	g.keys = make([]string, len(s.plant.vars))
	for i, n := range s.plant.vars {
		g.keys[i] = g.ns.nodeID(n).String()
	}
	objects := srv.Node(ua.NewNumericNodeID(0, id.ObjectsFolder))
	if objects == nil {
		return nil, errors.New("opcua sim: gopcua server has no Objects folder")
	}
	objects.AddRef(g.ns.serverNode(s.plant.root), server.RefTypeIDOrganizes, true)
	if err := g.register(); err != nil {
		return nil, err
	}
	return g, nil
}

// printfLogger adapts slog to gopcua's printf-style server.Logger.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) log(level slog.Level, msg string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, "gopcua: "+strings.TrimSpace(fmt.Sprintf(msg, args...)))
	}
}
func (p printfLogger) Debug(msg string, args ...any) { p.log(slog.LevelDebug, msg, args...) }
func (p printfLogger) Info(msg string, args ...any)  { p.log(slog.LevelDebug, msg, args...) }
func (p printfLogger) Warn(msg string, args ...any)  { p.log(slog.LevelDebug, msg, args...) }
func (p printfLogger) Error(msg string, args ...any) { p.log(slog.LevelDebug, msg, args...) }

// generation is one run of a gopcua server between (re)starts.
type generation struct {
	s        *Server
	srv      *server.Server
	internal string // the gopcua server's own endpoint URL
	ns       *nsView
	ctx      context.Context // ends when the generation stops
	cancel   context.CancelFunc
	keys     []string // monitored-item map key of every variable, by node.seq

	mu      sync.Mutex
	live    map[string]bool // authentication tokens of open sessions
	dropped map[string]bool // tokens the server forgot (DropSessions, refused identity)

	pub pubState
	evs evItems

	// dispatch state, guarded by Server.notifyMu
	dead    map[*server.Subscription]bool
	scratch []target
	last    map[itemKey]float64 // last value sent to an item with an absolute deadband
}

type target struct {
	sub      *server.Subscription
	handle   uint32
	attr     ua.AttributeID
	n        *node
	deadband float64 // absolute deadband of the item; 0 for none
}

type itemKey struct {
	sub    *server.Subscription
	handle uint32
}

// absDeadband is an item's absolute deadband: the one filter the
// simulator honours (gopcua's server applies none).
func absDeadband(p *ua.MonitoringParameters) float64 {
	if p.Filter == nil {
		return 0
	}
	if f, ok := p.Filter.Value.(*ua.DataChangeFilter); ok && f.DeadbandType == uint32(ua.DeadbandTypeAbsolute) {
		return f.DeadbandValue
	}
	return 0
}

// passes applies an absolute deadband to a numeric value: a change
// smaller than or equal to it is not sent (Part 4, 7.22.2).
func (g *generation) passes(t target, d *ua.DataValue) bool {
	if t.deadband <= 0 || d == nil || d.Value == nil {
		return true
	}
	v, ok := number(d.Value.Value())
	if !ok {
		return true
	}
	k := itemKey{t.sub, t.handle}
	if last, seen := g.last[k]; seen && (v-last <= t.deadband && last-v <= t.deadband) {
		return false
	}
	if g.last == nil {
		g.last = map[itemKey]float64{}
	}
	g.last[k] = v
	return true
}

// RequestedParameters returns the monitoring parameters the last
// monitored item created on a variable asked for (sampling interval,
// queue size, discard policy, filter), so tests can check per-node
// settings the simulator does not act on.
func (s *Server) RequestedParameters(path string) (*ua.MonitoringParameters, bool) {
	v, ok := s.params.Load(splitPath(path))
	if !ok {
		return nil, false
	}
	return v.(*ua.MonitoringParameters), true
}

func (s *Server) recordParams(it *ua.MonitoredItemCreateRequest) {
	if nid := it.ItemToMonitor.NodeID; nid != nil && nid.Type() == ua.NodeIDTypeString {
		s.params.Store(nid.StringID(), it.RequestedParameters)
	}
}

// notify delivers the current values of vars to every monitored item on
// them. It takes gopcua's monitored-item lock only to collect the items and
// sends after releasing it: gopcua's own ChangeNotification sends while
// holding it, which deadlocks when a subscription goroutine has exited.
// The caller holds Server.notifyMu.
func (g *generation) notify(vars []*node) {
	mis := g.srv.MonitoredItemService
	if mis == nil {
		return
	}
	g.scratch = g.scratch[:0]
	mis.Mu.Lock()
	if len(mis.Nodes) > 0 {
		for _, n := range vars {
			for _, it := range mis.Nodes[g.keys[n.seq]] {
				if it == nil || it.Sub == nil || it.Req == nil || it.Req.RequestedParameters == nil {
					continue
				}
				g.scratch = append(g.scratch, target{sub: it.Sub, handle: it.Req.RequestedParameters.ClientHandle, attr: it.Req.ItemToMonitor.AttributeID, n: n,
					deadband: absDeadband(it.Req.RequestedParameters)})
			}
		}
	}
	mis.Mu.Unlock()
	var skip map[*server.Subscription]bool
	for _, t := range g.scratch {
		if g.dead[t.sub] || skip[t.sub] {
			g.s.cnt.dropped.Add(1)
			continue
		}
		var d *ua.DataValue
		if t.attr == ua.AttributeIDValue {
			d = t.n.value.Load()
		} else {
			d = g.ns.Attribute(g.ns.nodeID(t.n), t.attr)
		}
		if !g.passes(t, d) {
			continue
		}
		if !g.send(t.sub, &ua.MonitoredItemNotification{ClientHandle: t.handle, Value: d}) {
			g.s.cnt.dropped.Add(1)
			if g.subGone(t.sub) {
				g.dead[t.sub] = true
			} else {
				if skip == nil {
					skip = map[*server.Subscription]bool{}
				}
				skip[t.sub] = true
			}
		}
	}
	clear(g.scratch)
}

// send hands a notification to a subscription's goroutine, waiting at most
// notifyTimeout for a subscription that is busy sending a publish response.
func (g *generation) send(sub *server.Subscription, n *ua.MonitoredItemNotification) bool {
	select {
	case sub.NotifyChannel <- n:
		return true
	default:
	}
	t := time.NewTimer(notifyTimeout)
	defer t.Stop()
	select {
	case sub.NotifyChannel <- n:
		return true
	case <-t.C:
		return false
	}
}

const notifyTimeout = 2 * time.Second

func (g *generation) subGone(sub *server.Subscription) bool {
	ss := g.srv.SubscriptionService
	ss.Mu.Lock()
	defer ss.Mu.Unlock()
	return ss.Subs[sub.ID] != sub
}

// deleteSubscriptions deletes the subscriptions for which match is true.
func (g *generation) deleteSubscriptions(match func(*server.Subscription) bool) {
	ss := g.srv.SubscriptionService
	if ss == nil {
		return
	}
	var ids []uint32
	ss.Mu.Lock()
	for id, sub := range ss.Subs {
		if sub != nil && sub.Session != nil && match(sub) {
			ids = append(ids, id)
		}
	}
	ss.Mu.Unlock()
	for _, id := range ids {
		ss.DeleteSubscription(id)
	}
}

func (g *generation) dropAll() {
	g.mu.Lock()
	n := len(g.live)
	for tok := range g.live {
		g.dropped[tok] = true
	}
	clear(g.live)
	g.mu.Unlock()
	g.s.cnt.dropSessions(n)
	go g.deleteSubscriptions(func(sub *server.Subscription) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.dropped[sub.Session.AuthTokenID.String()]
	})
}

// service returns a gopcua service value bound to srv. gopcua's service
// types (SessionService, AttributeService, ViewService) are structs with a
// single unexported *Server field and no constructor; the simulator wraps
// their handlers, so it builds them the only way it can. The layout check
// fails loudly if a gopcua upgrade changes them (go.mod pins v0.9.0).
func service[T any](srv *server.Server) *T {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct || t.NumField() != 1 || t.Field(0).Type != reflect.TypeFor[*server.Server]() {
		panic(fmt.Sprintf("opcua sim: gopcua's %s is no longer struct{ srv *Server }; the simulator needs github.com/gopcua/opcua v0.9.0", t))
	}
	p := new(T)
	*(**server.Server)(unsafe.Pointer(p)) = srv
	return p
}

type handler = func(*uasc.SecureChannel, ua.Request, uint32) (ua.Response, error)

// register installs the simulator's handlers before gopcua installs its
// own (RegisterHandler keeps the first one for each service).
func (g *generation) register() error {
	srv := g.srv
	sess := service[server.SessionService](srv)
	attr := service[server.AttributeService](srv)
	view := service[server.ViewService](srv)
	reg := func(typeID uint16, h handler) { srv.RegisterHandler(typeID, g.guard(h)) }
	srv.RegisterHandler(id.GetEndpointsRequest_Encoding_DefaultBinary, g.recovering(g.getEndpoints))
	srv.RegisterHandler(id.CreateSessionRequest_Encoding_DefaultBinary, g.recovering(g.createSession(sess.CreateSession)))
	srv.RegisterHandler(id.ActivateSessionRequest_Encoding_DefaultBinary, g.recovering(g.activateSession(sess.ActivateSession)))
	srv.RegisterHandler(id.CloseSessionRequest_Encoding_DefaultBinary, g.recovering(g.closeSession(sess.CloseSession)))
	reg(id.ReadRequest_Encoding_DefaultBinary, attr.Read)
	reg(id.WriteRequest_Encoding_DefaultBinary, attr.Write)
	reg(id.BrowseRequest_Encoding_DefaultBinary, view.Browse)
	reg(id.CreateSubscriptionRequest_Encoding_DefaultBinary, g.createSubscription)
	reg(id.PublishRequest_Encoding_DefaultBinary, g.publish)
	reg(id.RepublishRequest_Encoding_DefaultBinary, g.republish)
	reg(id.DeleteSubscriptionsRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, id uint32) (ua.Response, error) {
		return srv.SubscriptionService.DeleteSubscriptions(sc, r, id)
	})
	reg(id.CreateMonitoredItemsRequest_Encoding_DefaultBinary, g.createMonitoredItems)
	reg(id.DeleteMonitoredItemsRequest_Encoding_DefaultBinary, g.deleteMonitoredItems)
	reg(id.SetMonitoringModeRequest_Encoding_DefaultBinary, g.setMonitoringMode)
	reg(id.CallRequest_Encoding_DefaultBinary, g.call)
	reg(id.TransferSubscriptionsRequest_Encoding_DefaultBinary, g.transferSubscriptions)
	return nil
}

// recovering turns a panic in a gopcua handler (it dereferences unknown
// sessions and items) into BadInternalError instead of a dead process.
func (g *generation) recovering(h handler) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (resp ua.Response, err error) {
		defer func() {
			if p := recover(); p != nil {
				g.s.log.Warn("opcua sim: handler panicked", "request", fmt.Sprintf("%T", r), "panic", fmt.Sprint(p))
				resp, err = nil, ua.StatusBadInternalError
			}
		}()
		return h(sc, r, reqID)
	}
}

// guard answers BadSessionIdInvalid for requests without a live session,
// which gopcua's handlers would dereference, and recovers panics.
func (g *generation) guard(h handler) handler {
	return g.recovering(func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		hdr := r.Header()
		if hdr == nil || hdr.AuthenticationToken == nil {
			return nil, ua.StatusBadSessionIDInvalid
		}
		tok := hdr.AuthenticationToken.String()
		g.mu.Lock()
		ok := g.live[tok] && !g.dropped[tok]
		g.mu.Unlock()
		if !ok || g.srv.Session(hdr) == nil {
			return nil, ua.StatusBadSessionIDInvalid
		}
		return h(sc, r, reqID)
	})
}

// public returns a copy of an endpoint description with the public URL.
func (g *generation) public(ep *ua.EndpointDescription) *ua.EndpointDescription {
	e := *ep
	e.EndpointURL = g.s.Endpoint()
	if ep.Server != nil {
		app := *ep.Server
		app.DiscoveryURLs = []string{e.EndpointURL}
		e.Server = &app
	}
	return &e
}

// getEndpoints lists the endpoints under the public URL, whatever URL the
// client asked with.
func (g *generation) getEndpoints(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.GetEndpointsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	var eps []*ua.EndpointDescription
	for _, ep := range g.srv.Endpoints() {
		eps = append(eps, g.public(ep))
	}
	return &ua.GetEndpointsResponse{
		ResponseHeader: &ua.ResponseHeader{
			Timestamp: time.Now(), RequestHandle: req.RequestHeader.RequestHandle, ServiceResult: ua.StatusOK,
			ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{}, AdditionalHeader: ua.NewExtensionObject(nil),
		},
		Endpoints: eps,
	}, nil
}

func (g *generation) createSession(orig handler) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		if req, ok := r.(*ua.CreateSessionRequest); ok {
			cp := *req
			cp.EndpointURL = g.internal
			r = &cp
		}
		resp, err := orig(sc, r, reqID)
		if res, ok := resp.(*ua.CreateSessionResponse); ok {
			for i, ep := range res.ServerEndpoints {
				res.ServerEndpoints[i] = g.public(ep)
			}
		}
		if res, ok := resp.(*ua.CreateSessionResponse); ok && err == nil && res.AuthenticationToken != nil {
			g.mu.Lock()
			g.live[res.AuthenticationToken.String()] = true
			g.mu.Unlock()
			g.s.cnt.sessionCreated()
		}
		return resp, err
	}
}

func (g *generation) closeSession(orig handler) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		if hdr := r.Header(); hdr != nil && hdr.AuthenticationToken != nil {
			tok := hdr.AuthenticationToken.String()
			g.mu.Lock()
			was := g.live[tok]
			delete(g.live, tok)
			g.mu.Unlock()
			if was {
				g.pub.mu.Lock()
				delete(g.pub.queues, tok)
				g.pub.mu.Unlock()
				g.s.cnt.sessionClosed()
				go g.deleteSubscriptions(func(sub *server.Subscription) bool { return sub.Session.AuthTokenID.String() == tok })
			}
		}
		return orig(sc, r, reqID)
	}
}

// activateSession checks the user identity, which gopcua's server does not,
// before activating. A session whose identity is refused is discarded.
func (g *generation) activateSession(orig handler) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.ActivateSessionRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		if code := g.checkIdentity(req); code != ua.StatusOK {
			if tok := req.RequestHeader.AuthenticationToken; tok != nil {
				g.mu.Lock()
				was := g.live[tok.String()]
				delete(g.live, tok.String())
				g.dropped[tok.String()] = true
				g.mu.Unlock()
				if was {
					g.s.cnt.sessionRejected()
				}
			}
			return nil, code
		}
		return orig(sc, r, reqID)
	}
}

func (g *generation) checkIdentity(req *ua.ActivateSessionRequest) ua.StatusCode {
	var tok any
	if req.UserIdentityToken != nil {
		tok = req.UserIdentityToken.Value
	}
	switch t := tok.(type) {
	case nil, *ua.AnonymousIdentityToken:
		if g.s.cfg.DenyAnonymous {
			return ua.StatusBadIdentityTokenRejected
		}
		return ua.StatusOK
	case *ua.UserNameIdentityToken:
		want, ok := g.s.cfg.Users[t.UserName]
		if !ok || len(g.s.cfg.Users) == 0 {
			return ua.StatusBadUserAccessDenied
		}
		got, err := g.password(t)
		if err != nil || got != want {
			return ua.StatusBadUserAccessDenied
		}
		return ua.StatusOK
	case *ua.X509IdentityToken:
		for _, c := range g.s.cfg.UserCertificates {
			if string(c) == string(t.CertificateData) {
				return ua.StatusOK
			}
		}
		return ua.StatusBadIdentityTokenRejected
	}
	return ua.StatusBadIdentityTokenInvalid
}

// password decrypts a user name token's password: a 4-byte little-endian
// length, the password, then the server nonce (Part 4, 7.36.3).
func (g *generation) password(t *ua.UserNameIdentityToken) (string, error) {
	if t.EncryptionAlgorithm == "" {
		return string(t.Password), nil
	}
	// gopcua names token policies <type>_<policy>, e.g. username_basic256sha256.
	policy := ""
	if _, suffix, ok := strings.Cut(t.PolicyID, "_"); ok {
		for _, uri := range ua.SecurityPolicyURIs {
			if strings.EqualFold(strings.TrimPrefix(uri, ua.SecurityPolicyURIPrefix), suffix) {
				policy = uri
			}
		}
	}
	if policy == "" || g.s.cert.Key == nil {
		return "", fmt.Errorf("no policy for token policy id %q", t.PolicyID)
	}
	enc, err := uapolicy.Asymmetric(policy, g.s.cert.Key, nil)
	if err != nil {
		return "", err
	}
	plain, err := enc.Decrypt(t.Password)
	if err != nil {
		return "", err
	}
	const nonceLen = 32 // gopcua's server nonce
	if len(plain) < 4 {
		return "", errors.New("short password secret")
	}
	n := int(binary.LittleEndian.Uint32(plain))
	if n < nonceLen || 4+n > len(plain) {
		return "", errors.New("bad password secret length")
	}
	return string(plain[4 : 4+n-nonceLen]), nil
}

// createMonitoredItems passes only items on existing nodes to gopcua, which
// accepts any NodeId, and answers BadNodeIdUnknown for the others as a
// real server does.
func (g *generation) createMonitoredItems(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.CreateMonitoredItemsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	results := make([]*ua.MonitoredItemCreateResult, len(req.ItemsToCreate))
	var pass []*ua.MonitoredItemCreateRequest
	var idx []int
	tok := ""
	if req.RequestHeader != nil && req.RequestHeader.AuthenticationToken != nil {
		tok = req.RequestHeader.AuthenticationToken.String()
	}
	for i, it := range req.ItemsToCreate {
		if it != nil && it.ItemToMonitor != nil && it.ItemToMonitor.AttributeID == ua.AttributeIDEventNotifier {
			results[i] = g.createEventItem(req.SubscriptionID, tok, it)
			continue
		}
		if it != nil && it.ItemToMonitor != nil && it.RequestedParameters != nil && g.exists(it.ItemToMonitor.NodeID) {
			g.s.recordParams(it)
		}
		if it == nil || it.ItemToMonitor == nil || !g.exists(it.ItemToMonitor.NodeID) {
			results[i] = &ua.MonitoredItemCreateResult{StatusCode: ua.StatusBadNodeIDUnknown, FilterResult: ua.NewExtensionObject(nil)}
			continue
		}
		pass = append(pass, it)
		idx = append(idx, i)
	}
	sub := *req
	sub.ItemsToCreate = pass
	resp, err := g.srv.MonitoredItemService.CreateMonitoredItems(sc, &sub, reqID)
	if err != nil {
		return nil, err
	}
	res, ok := resp.(*ua.CreateMonitoredItemsResponse)
	if !ok {
		return resp, nil
	}
	for k, i := range idx {
		if k < len(res.Results) {
			results[i] = res.Results[k]
		}
	}
	res.Results = results
	return res, nil
}

func (g *generation) exists(nid *ua.NodeID) bool {
	if nid == nil {
		return false
	}
	if nid.Namespace() == g.ns.idx {
		return g.ns.lookup(nid) != nil
	}
	return g.srv.Node(nid) != nil
}

// knownItems splits ids into those gopcua has (and would not dereference
// as nil) and the rest.
func (g *generation) knownItems(ids []uint32) (known []uint32, pos []int) {
	mis := g.srv.MonitoredItemService
	mis.Mu.Lock()
	defer mis.Mu.Unlock()
	for i, id := range ids {
		if it := mis.Items[id]; it != nil && it.Sub != nil && it.Sub.Session != nil {
			known = append(known, id)
			pos = append(pos, i)
		}
	}
	return known, pos
}

func (g *generation) deleteMonitoredItems(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.DeleteMonitoredItemsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	events := g.deleteEventItems(req.MonitoredItemIDs)
	known, pos := g.knownItems(req.MonitoredItemIDs)
	sub := *req
	sub.MonitoredItemIDs = known
	resp, err := g.srv.MonitoredItemService.DeleteMonitoredItems(sc, &sub, reqID)
	if res, ok := resp.(*ua.DeleteMonitoredItemsResponse); ok && err == nil {
		res.Results = merge(len(req.MonitoredItemIDs), pos, res.Results)
		for i := range events {
			res.Results[i] = ua.StatusOK
		}
	}
	return resp, err
}

func (g *generation) setMonitoringMode(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.SetMonitoringModeRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	known, pos := g.knownItems(req.MonitoredItemIDs)
	sub := *req
	sub.MonitoredItemIDs = known
	resp, err := g.srv.MonitoredItemService.SetMonitoringMode(sc, &sub, reqID)
	if res, ok := resp.(*ua.SetMonitoringModeResponse); ok && err == nil {
		res.Results = merge(len(req.MonitoredItemIDs), pos, res.Results)
	}
	return resp, err
}

func merge(n int, pos []int, got []ua.StatusCode) []ua.StatusCode {
	out := make([]ua.StatusCode, n)
	for i := range out {
		out[i] = ua.StatusBadMonitoredItemIDInvalid
	}
	for k, i := range pos {
		if k < len(got) {
			out[i] = got[k]
		}
	}
	return out
}

// Stats are the simulator's counters.
type Stats struct {
	// Sessions created, closed by their client, refused at activation
	// (identity) and forgotten by DropSessions or a restart.
	SessionsCreated, SessionsClosed, SessionsRejected, SessionsDropped uint64
	// SessionsActive counts the sessions of the running server that were
	// created and not closed, refused or dropped. gopcua's server never
	// times sessions out, so a client that vanished still counts.
	SessionsActive int
	// MaxSessionsActive is the highest SessionsActive since Start.
	MaxSessionsActive int
	Restarts          uint64
	// PublishRequests received, and those swallowed by StallPublish.
	PublishRequests, PublishSwallowed uint64
	// NotificationsLost counts messages LosePublish kept from the client;
	// Republished counts messages Republish answered with.
	NotificationsLost, Republished uint64
	// NotificationsDropped counts notifications not delivered to a
	// subscription that was gone or stuck for notifyTimeout.
	NotificationsDropped uint64
	// SubscriptionsCreated since Start; SubscriptionsTransferred to
	// another session by TransferSubscriptions.
	SubscriptionsCreated, SubscriptionsTransferred uint64
	// SentToDeadChannel counts publish responses whose connection was
	// gone: the message stays in the retransmission queue.
	SentToDeadChannel uint64
	// MethodCalls answered by Call (Acknowledge and Confirm included);
	// Events fired.
	MethodCalls, Events uint64
	// Subscriptions and MonitoredItems in the running server.
	Subscriptions, MonitoredItems int
	// Connections open now, and accepted since Start.
	Connections      int
	ConnectionsTotal uint64
}

type counters struct {
	mu                                          sync.Mutex
	created, closed, rejected, droppedSess      uint64
	active, maxActive                           int
	restarts, publishRequests, publishSwallowed atomic.Uint64
	dropped, lost, republished                  atomic.Uint64
	subsCreated, transferred                    atomic.Uint64
	deadChannel                                 atomic.Uint64
}

func (c *counters) sessionCreated() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.created++
	c.active++
	c.maxActive = max(c.maxActive, c.active)
}

func (c *counters) sessionClosed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	c.active = max(0, c.active-1)
}

func (c *counters) sessionRejected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejected++
	c.active = max(0, c.active-1)
}

func (c *counters) dropSessions(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.droppedSess += uint64(n)
	c.active = max(0, c.active-n)
}

func (c *counters) resetActive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.droppedSess += uint64(c.active)
	c.active = 0
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.cnt
	c.mu.Lock()
	st := Stats{
		SessionsCreated: c.created, SessionsClosed: c.closed, SessionsRejected: c.rejected, SessionsDropped: c.droppedSess,
		SessionsActive: c.active, MaxSessionsActive: c.maxActive,
	}
	c.mu.Unlock()
	st.Restarts = c.restarts.Load()
	st.PublishRequests = c.publishRequests.Load()
	st.PublishSwallowed = c.publishSwallowed.Load()
	st.NotificationsDropped = c.dropped.Load()
	st.NotificationsLost = c.lost.Load()
	st.Republished = c.republished.Load()
	st.SubscriptionsCreated, st.SubscriptionsTransferred = c.subsCreated.Load(), c.transferred.Load()
	st.SentToDeadChannel = c.deadChannel.Load()
	s.ev.mu.Lock()
	st.MethodCalls, st.Events = s.ev.calls, s.ev.events
	s.ev.mu.Unlock()
	st.Connections, st.ConnectionsTotal = s.px.connections()
	if g := s.cur.Load(); g != nil {
		if ss := g.srv.SubscriptionService; ss != nil {
			ss.Mu.Lock()
			for _, sub := range ss.Subs {
				if sub != nil && sub.Session != nil {
					st.Subscriptions++
				}
			}
			ss.Mu.Unlock()
		}
		if mis := g.srv.MonitoredItemService; mis != nil {
			mis.Mu.Lock()
			st.MonitoredItems = len(mis.Items)
			mis.Mu.Unlock()
		}
	}
	return st
}
