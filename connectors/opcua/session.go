package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

var (
	// ErrAuth is wrapped when the server refuses the user identity.
	ErrAuth = errors.New("user identity refused")
	// ErrNoEndpoint is wrapped when the server offers no endpoint that
	// matches the configured security and identity.
	ErrNoEndpoint = errors.New("no matching endpoint")
	// ErrWatchdog is wrapped when a subscription stayed silent after being
	// rebuilt, so the whole session is replaced.
	ErrWatchdog = errors.New("subscription silent")
)

// StatusError is a Bad StatusCode the server answered for one node.
type StatusError struct {
	Op   string // "write", "read"
	Node string
	Tag  string
	Code ua.StatusCode
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s (%s): %s", e.Op, e.Tag, e.Node, statusName(e.Code))
}

// Unwrap returns the StatusCode (errors.Is(err, ua.StatusBadNotWritable)
// works). It deliberately does not match connectors.ErrNotWritable: that
// one means ferry refused before sending (the command result "refused"),
// while a StatusCode is the device's own answer ("failed"), BadNotWritable
// included.
func (e *StatusError) Unwrap() error { return e.Code }

// statusName is "BadNotWritable (0x803B0000)".
func statusName(c ua.StatusCode) string {
	if d, ok := ua.StatusCodes[c]; ok {
		return fmt.Sprintf("%s (0x%08X)", d.Name, uint32(c))
	}
	return fmt.Sprintf("0x%08X", uint32(c))
}

// dialOptions are what dial needs besides the config.
type dialOptions struct {
	id         identity
	trust      trustStore
	sessionTag string
	timeout    time.Duration // per call
	requestTO  time.Duration // the client's request timeout (publish requests wait longer)
	log        *slog.Logger
}

// dial discovers the server's endpoints, picks one by the configured
// security and identity, checks the server certificate against the trust
// list, and opens one session. The client has gopcua's auto-reconnect off:
// the caller owns recovery.
func dial(ctx context.Context, cfg *Config, o dialOptions) (*gopcua.Client, *ua.EndpointDescription, error) {
	tokenType := ua.UserTokenTypeAnonymous
	switch cfg.Auth.Type {
	case "username":
		tokenType = ua.UserTokenTypeUserName
	case "certificate":
		tokenType = ua.UserTokenTypeCertificate
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	eps, err := gopcua.GetEndpoints(cctx, cfg.Endpoint, gopcua.DialTimeout(o.timeout))
	if err != nil {
		return nil, nil, fmt.Errorf("get endpoints: %w", err)
	}
	ep, err := selectEndpoint(eps, cfg.Security.Policy, cfg.Security.Mode, tokenType)
	if err != nil {
		return nil, nil, err
	}
	if usesServerCert(ep, tokenType) {
		tofu, err := o.trust.check(ep.ServerCertificate)
		if err != nil {
			return nil, nil, err
		}
		if tofu && o.log != nil {
			o.log.Warn("trusted server certificate on first use", "thumbprint", Thumbprint(ep.ServerCertificate), "trust_dir", o.trust.dir)
		}
	}
	opts := []gopcua.Option{
		gopcua.AutoReconnect(false),
		gopcua.SecurityFromEndpoint(ep, tokenType),
		gopcua.Certificate(o.id.der),
		gopcua.PrivateKey(o.id.key),
		gopcua.ApplicationURI(o.id.uri),
		gopcua.ApplicationName("ferry"),
		gopcua.ProductURI("urn:ferry"),
		gopcua.SessionName("ferry " + o.sessionTag),
		gopcua.SessionTimeout(time.Minute),
		gopcua.RequestTimeout(max(o.requestTO, o.timeout)),
		gopcua.DialTimeout(o.timeout),
	}
	switch cfg.Auth.Type {
	case "username":
		opts = append(opts, gopcua.AuthUsername(cfg.Auth.Username, cfg.Auth.Password))
	case "certificate":
		der, err := loadCert(cfg.Auth.Certificate)
		if err != nil {
			return nil, nil, fmt.Errorf("user certificate: %w", err)
		}
		key, err := loadKey(cfg.Auth.PrivateKey)
		if err != nil {
			return nil, nil, fmt.Errorf("user key: %w", err)
		}
		opts = append(opts, gopcua.AuthCertificate(der), gopcua.AuthPrivateKey(key))
	}
	c, err := gopcua.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Connect(cctx); err != nil {
		_ = c.Close(context.Background())
		return nil, nil, explainConnect(cfg, ep, err)
	}
	return c, ep, nil
}

// usesServerCert reports whether the session relies on the server's
// certificate: a secured channel, or a password encrypted for the server.
func usesServerCert(ep *ua.EndpointDescription, tokenType ua.UserTokenType) bool {
	if ep.SecurityPolicyURI != ua.SecurityPolicyURINone {
		return true
	}
	for _, t := range ep.UserIdentityTokens {
		if t.TokenType == tokenType && tokenType != ua.UserTokenTypeAnonymous && t.SecurityPolicyURI != "" && t.SecurityPolicyURI != ua.SecurityPolicyURINone {
			return true
		}
	}
	return false
}

func explainConnect(cfg *Config, ep *ua.EndpointDescription, err error) error {
	switch {
	case errors.Is(err, ua.StatusBadUserAccessDenied), errors.Is(err, ua.StatusBadIdentityTokenRejected), errors.Is(err, ua.StatusBadIdentityTokenInvalid):
		who := "the anonymous user"
		switch cfg.Auth.Type {
		case "username":
			who = fmt.Sprintf("user %q", cfg.Auth.Username)
		case "certificate":
			who = "the user certificate"
		}
		return fmt.Errorf("%w: the server refused %s (wrong user name or password?): %v", ErrAuth, who, err)
	case errors.Is(err, ua.StatusBadSecurityChecksFailed), errors.Is(err, ua.StatusBadCertificateUntrusted), errors.Is(err, ua.StatusBadCertificateInvalid):
		return fmt.Errorf("the server refused ferry's application certificate (the server must trust it): %w", err)
	}
	return fmt.Errorf("connect (%s, %s): %w", policyName(ep.SecurityPolicyURI), ep.SecurityMode, err)
}

func policyName(uri string) string { return strings.TrimPrefix(uri, ua.SecurityPolicyURIPrefix) }

// selectEndpoint picks the endpoint with the given policy and mode (or,
// for policy auto, the most secure one) that accepts the identity token.
func selectEndpoint(eps []*ua.EndpointDescription, policy, mode string, tokenType ua.UserTokenType) (*ua.EndpointDescription, error) {
	var best *ua.EndpointDescription
	for _, ep := range eps {
		if policy == "auto" {
			if _, ok := supportedURIs[ep.SecurityPolicyURI]; !ok {
				continue
			}
		} else if ep.SecurityPolicyURI != policyURIs[policy] || ep.SecurityMode != securityModes[mode] {
			continue
		}
		if !offersToken(ep, tokenType) {
			continue
		}
		if best == nil || ep.SecurityLevel > best.SecurityLevel {
			best = ep
		}
	}
	if best != nil {
		return best, nil
	}
	var offers []string
	for _, ep := range eps {
		var toks []string
		for _, t := range ep.UserIdentityTokens {
			toks = append(toks, strings.ToLower(strings.TrimPrefix(t.TokenType.String(), "UserTokenType")))
		}
		offers = append(offers, fmt.Sprintf("%s/%s (%s)", policyName(ep.SecurityPolicyURI), strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode"), strings.Join(toks, ", ")))
	}
	sort.Strings(offers)
	want := policy + "/" + mode
	if policy == "auto" {
		want = "any supported policy"
	}
	return nil, fmt.Errorf("%w: no endpoint with %s accepting %s identities; the server offers %s", ErrNoEndpoint, want,
		strings.ToLower(strings.TrimPrefix(tokenType.String(), "UserTokenType")), strings.Join(offers, "; "))
}

var supportedURIs = func() map[string]bool {
	m := map[string]bool{}
	for _, u := range policyURIs {
		m[u] = true
	}
	return m
}()

func offersToken(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	for _, tok := range ep.UserIdentityTokens {
		if tok.TokenType == t {
			return true
		}
	}
	return false
}

// run is the session loop: connect, serve until the session fails, report
// the gap, back off, again. One session at a time, ever.
func (o *OPCUA) run(ctx context.Context) error {
	bo := connectors.Backoff{Min: o.Reconnect.Min.D(), Max: o.Reconnect.Max.D()}
	for ctx.Err() == nil {
		err := o.session(ctx, &bo)
		if ctx.Err() != nil {
			return nil
		}
		o.st.reconnects.Add(1)
		o.setSession(SessionDown, nil)
		o.env.Down(err)
		if connectors.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
	return nil
}

// session runs one session from connect to failure.
func (o *OPCUA) session(ctx context.Context, bo *connectors.Backoff) error {
	if o.carry != nil && time.Since(o.carry.at) > carryTTL {
		o.dropCarry(ctx, fmt.Errorf("no session to take the subscriptions over for %s: %w", carryTTL, o.carry.cause))
	}
	c, ep, err := dial(ctx, &o.Config, dialOptions{
		id: o.id, trust: o.trust, sessionTag: o.env.Name, timeout: o.Timeout.D(),
		requestTO: o.publishTimeout(), log: o.env.Logger,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", o.Endpoint, err)
	}
	o.st.sessions.Add(1)
	o.m.sessions.Inc()
	o.setSession(SessionOpen, ep)
	s := &session{o: o, c: c, ep: ep, subs: map[uint32]*subscription{}, types: map[string]nodeType{}}
	o.env.Logger.Info("session opened", "endpoint", o.Endpoint, "policy", policyName(ep.SecurityPolicyURI), "mode", ep.SecurityMode.String(), "namespaces", len(c.Namespaces()))
	err = s.serve(ctx) // publishes s in o.cur once its tags are known
	o.cur.Store(nil)
	kept := s.kept
	if s.delivered.Load() || kept {
		bo.Reset()
		// Not when ferry itself stops; not yet when the next session may
		// take the subscriptions over (it reports the gap if it cannot).
		if ctx.Err() == nil && !kept {
			s.reportGap(ctx, nil, ua.StatusBadNoCommunication)
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if kept {
		// CloseSession would delete the subscriptions the next session is
		// to take over: only the connection is closed.
		cancel()
	}
	_ = c.Close(cctx)
	cancel()
	o.st.subs.Store(0)
	o.st.items.Store(0)
	if ctx.Err() == nil {
		o.env.Logger.Info("session closed", "endpoint", o.Endpoint, "error", errString(err))
	}
	return fmt.Errorf("%s: %w", o.Endpoint, err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// publishTimeout is how long a Publish request may wait at the server: two
// keep-alive periods, at least the call timeout.
func (o *OPCUA) publishTimeout() time.Duration {
	s := o.Subscription
	return max(2*time.Duration(s.KeepaliveCount)*s.PublishingInterval.D()+time.Second, o.Timeout.D())
}

// session is one open OPC UA session and what was built on it.
type session struct {
	o      *OPCUA
	c      *gopcua.Client
	ep     *ua.EndpointDescription
	limits limits
	items  []*item // client handle h is items[h-1]

	delivered atomic.Bool // records were emitted from this session

	// subscription state, owned by the serve goroutine
	subs        map[uint32]*subscription
	backlogAt   time.Time
	noRepublish error // set once the server said it does not support Republish

	acksMu sync.Mutex
	acks   []*ua.SubscriptionAcknowledgement

	batch    bus.Batch
	lastTS   int64
	lastAttr map[string]string

	typesMu sync.Mutex
	types   map[string]nodeType

	methods map[string]*method // by name; built before the session is published

	vanished map[string]bool // NodeIds browse_every no longer finds, reported once
	kept     bool            // its subscriptions were handed to the next session
}

// serve resolves the nodes and runs the configured mode until it fails.
func (s *session) serve(ctx context.Context) error {
	s.limits = s.readLimits(ctx)
	items, bad, err := s.resolve(ctx)
	if err != nil {
		return err
	}
	if *s.o.UnitsFromServer {
		s.serverUnits(ctx, items)
	}
	s.serverAccess(ctx, items)
	if s.methods, err = s.resolveMethods(ctx); err != nil {
		return err
	}
	s.items = items
	tt := &tagTable{byTag: make(map[string]*item, len(items))}
	for _, it := range items {
		tt.byTag[it.tag] = it
	}
	s.o.table.Store(tt)
	s.o.cur.Store(s)
	s.o.st.bad.Store(int64(len(bad)))
	if len(bad) > 0 {
		s.emitBad(ctx, bad)
	}
	if len(items) == 0 && (len(s.o.Events) == 0 || s.o.Mode == "poll") {
		return fmt.Errorf("no nodes to read: none of the configured nodes resolved (%d failed)", len(bad))
	}
	if s.o.Mode == "poll" {
		return s.poll(ctx)
	}
	return s.subscribe(ctx)
}

// call sends one request with the call timeout and returns its response.
func call[T ua.Response](ctx context.Context, s *session, req ua.Request) (T, error) {
	var out T
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout.D())
	defer cancel()
	err := s.c.Send(cctx, req, func(v ua.Response) error {
		r, ok := v.(T)
		if !ok {
			return fmt.Errorf("unexpected response %T to %T", v, req)
		}
		out = r
		return nil
	})
	return out, err
}

// limits are the server's operation limits; 0 means not stated.
type limits struct {
	maxNodesPerRead, maxNodesPerBrowse, maxItemsPerCall, maxNodesPerWrite int
}

func (s *session) readLimits(ctx context.Context) limits {
	ids := []uint32{
		id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
		id.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
		id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
		id.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
	}
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, n := range ids {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, n), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
	}
	res, err := call[*ua.ReadResponse](ctx, s, req)
	var l limits
	if err != nil || len(res.Results) != len(ids) {
		return l
	}
	get := func(i int) int {
		dv := res.Results[i]
		if dv == nil || dv.Value == nil || Quality(dv.Status) != bus.Good {
			return 0
		}
		switch x := dv.Value.Value().(type) {
		case uint32:
			return int(x)
		case int32:
			return int(x)
		case uint16:
			return int(x)
		}
		return 0
	}
	l = limits{get(0), get(1), get(2), get(3)}
	return l
}

// chunk is the smaller of the server's limit (when stated) and ours.
func chunk(server, ours int) int {
	if server > 0 && server < ours {
		return server
	}
	return ours
}

// emitBad emits one BAD record per item (resolution or creation refused).
func (s *session) emitBad(ctx context.Context, bad []badItem) {
	b := bus.Batch{Records: make([]bus.Record, 0, len(bad))}
	now := time.Now().UnixNano()
	for _, x := range bad {
		b.Records = append(b.Records, bus.Record{
			Device: s.o.device, Tag: x.tag, Unit: x.unit, Quality: bus.Bad, Status: uint32(x.code), SourceTime: now,
		})
	}
	if err := s.o.env.Emit(ctx, &b); err != nil && ctx.Err() == nil {
		s.o.env.Error(err)
	}
	first := bad[0]
	s.o.logBurst("nodes refused", slog.Int("count", len(bad)), slog.String("first", first.tag), slog.String("node", first.node), slog.String("status", statusName(first.code)))
}

// reportGap emits a BAD record with code for every item (of one
// subscription, or all when sub is nil): the data between the last value
// and the next is missing, and a consumer must not mistake the silence for
// a steady value.
func (s *session) reportGap(ctx context.Context, sub *subscription, code ua.StatusCode) {
	items := s.items
	if sub != nil {
		items = sub.items
	}
	if len(items) == 0 {
		return
	}
	b := bus.Batch{Records: make([]bus.Record, 0, len(items))}
	now := time.Now().UnixNano()
	for _, it := range items {
		b.Records = append(b.Records, bus.Record{
			Device: s.o.device, Tag: it.tag, Unit: it.unit, Quality: bus.Bad, Status: uint32(code), SourceTime: now,
		})
	}
	// The session context may be done (Stop); the gap is still worth
	// reporting if the bus takes it promptly.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := s.o.env.Emit(ectx, &b); err != nil && ctx.Err() == nil {
		s.o.env.Error(err)
	}
}

// fatal reports whether an error from a service call means the session
// or connection is gone.
func fatal(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, ua.StatusBadSessionIDInvalid), errors.Is(err, ua.StatusBadSessionClosed),
		errors.Is(err, ua.StatusBadSessionNotActivated), errors.Is(err, ua.StatusBadSecureChannelIDInvalid),
		errors.Is(err, ua.StatusBadSecureChannelClosed), errors.Is(err, ua.StatusBadServerNotConnected),
		errors.Is(err, ua.StatusBadConnectionClosed), errors.Is(err, ua.StatusBadNotConnected),
		errors.Is(err, ua.StatusBadCommunicationError), errors.Is(err, ua.StatusBadShutdown),
		errors.Is(err, ua.StatusBadServerHalted), errors.Is(err, ua.StatusBadSecurityChecksFailed):
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) || strings.Contains(err.Error(), "secure channel not open") || strings.Contains(err.Error(), "use of closed network connection")
}
