// Package opcua is the OPC UA client connector: it subscribes to (or polls)
// the variables of an OPC UA server and emits one batch per publish
// response (or poll cycle), and writes tags back.
//
// It keeps its own session and subscription machinery on top of gopcua's
// client rather than gopcua's auto-reconnect: after a reconnect gopcua can
// report Connected while holding no subscriptions (gopcua #876) and its
// publish loop can stall after a restore (gopcua PR #898). Here one
// goroutine owns the session: it connects, resolves the nodes, creates the
// subscriptions, runs the publish loop with a liveness watchdog per
// subscription, and on any connection failure closes the session, reports
// the gap as BAD records, backs off and starts over. There is never more
// than one session per connector.
package opcua

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "opcua",
		Roles:   connectors.RoleSource | connectors.RoleWriter,
		New:     func() connectors.Connector { return &OPCUA{} },
		Sample:  sample,
		Summary: "OPC UA client: subscriptions or polling, browse discovery, security, write-back",
	})
}

// OPCUA is the connector.
type OPCUA struct {
	Config `yaml:",inline"`

	env    *connectors.Env
	device string
	id     identity
	trust  trustStore
	m      metrics
	st     counters
	burst  connectors.Burst

	cur   atomic.Pointer[session]  // the open session, for WriteTag
	table atomic.Pointer[tagTable] // the resolved tags of the last session
	conds sync.Map                 // condition tag → condition (its latest event), for Acknowledge and Confirm
	carry *carried                 // a lost session's subscriptions, for the next one (session goroutine only)
	sess  atomic.Pointer[sessionInfo]
	rate  rateWindow
}

// Outputs implements connectors.Source.
func (o *OPCUA) Outputs() []string { return []string{connectors.DefaultOutput} }

// Start prepares the application certificate and starts the session loop;
// a server that is down is a connector that is down, not a failed start.
func (o *OPCUA) Start(_ context.Context, env *connectors.Env) error {
	o.env = env
	o.device = o.Device
	if o.device == "" {
		o.device = env.Name
	}
	o.m = newMetrics(env)
	dir, err := env.DataDir()
	if err != nil && (o.Security.Certificate == "" || o.Security.TrustDir == "") {
		return err
	}
	pki := filepath.Join(dir, "pki")
	appURI := o.Security.ApplicationURI
	if appURI == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		appURI = "urn:ferry:" + host + ":" + env.Name
	}
	id, generated, err := loadOrCreateIdentity(env.Path(o.Security.Certificate), env.Path(o.Security.PrivateKey), pki, appURI, "ferry "+env.Name)
	if err != nil {
		return err
	}
	if generated {
		env.Logger.Info("generated application certificate", "path", filepath.Join(pki, "own", "cert.der"), "application_uri", appURI, "thumbprint", Thumbprint(id.der))
	}
	o.id = id
	o.trust = trustStore{dir: env.Path(o.Security.TrustDir), tofu: o.Security.TrustOnFirstUse}
	if o.trust.dir == "" {
		o.trust.dir = filepath.Join(pki, "trusted")
	}
	o.trust.rejected = filepath.Join(filepath.Dir(o.trust.dir), "rejected")
	if err := o.trust.ensure(); err != nil {
		return err
	}
	env.Connecting()
	o.setSession(SessionConnecting, nil)
	o.rate.update(time.Now(), 0, 0)
	env.Go("session", o.run)
	return nil
}

// Stop has nothing of its own to release: the session loop ends with the
// Env's context and closes the session on its way out.
func (o *OPCUA) Stop(context.Context) error { return nil }

// Stats is what the connector did, for tests and the status page.
type Stats struct {
	Sessions         uint64 // sessions opened
	Reconnects       uint64 // sessions lost or failed attempts
	WatchdogRebuilds uint64 // subscriptions rebuilt by the watchdog
	Subscriptions    int    // in the current session
	MonitoredItems   int    // created in the current session
	BadItems         int    // refused at creation or resolution in the current session
	PublishResponses uint64 // with notifications
	KeepAlives       uint64
	Notifications    uint64
	// MaxPerResponse is the most notifications one publish response carried.
	MaxPerResponse uint64
	// PublishOutstanding is the Publish requests waiting at the server now.
	PublishOutstanding int64
	// Reordered counts NotificationMessages that arrived ahead of a missing
	// one and were held back; Duplicates those that arrived again (or after
	// their number was given up); Republished those recovered with
	// Republish; NotificationGaps the sequence numbers lost for good.
	Reordered, Duplicates, Republished, NotificationGaps uint64
	// Transferred counts subscriptions taken over from a lost session
	// with TransferSubscriptions; TransferFailed those created again.
	Transferred, TransferFailed uint64
	// BrowseRuns counts browse_every runs; NodesAdded the variables they
	// found and subscribed, NodesVanished those they no longer found.
	BrowseRuns, NodesAdded, NodesVanished uint64
	Reads                                 uint64 // Read calls in poll mode
}

type counters struct {
	sessions, reconnects, rebuilds      atomic.Uint64
	subs, items, bad                    atomic.Int64
	responses, keepAlives, notifs, maxN atomic.Uint64
	outstanding                         atomic.Int64
	reads                               atomic.Uint64
	reordered, duplicates, republished  atomic.Uint64
	gaps                                atomic.Uint64
	transferred, transferFailed         atomic.Uint64
	rescans, added, vanished            atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (o *OPCUA) Stats() Stats {
	c := &o.st
	return Stats{
		Sessions: c.sessions.Load(), Reconnects: c.reconnects.Load(), WatchdogRebuilds: c.rebuilds.Load(),
		Subscriptions: int(c.subs.Load()), MonitoredItems: int(c.items.Load()), BadItems: int(c.bad.Load()),
		PublishResponses: c.responses.Load(), KeepAlives: c.keepAlives.Load(), Notifications: c.notifs.Load(),
		MaxPerResponse: c.maxN.Load(), PublishOutstanding: c.outstanding.Load(), Reads: c.reads.Load(),
		Reordered: c.reordered.Load(), Duplicates: c.duplicates.Load(), Republished: c.republished.Load(), NotificationGaps: c.gaps.Load(),
		Transferred: c.transferred.Load(), TransferFailed: c.transferFailed.Load(),
		BrowseRuns: c.rescans.Load(), NodesAdded: c.added.Load(), NodesVanished: c.vanished.Load(),
	}
}

type metrics struct {
	sessions, rebuilds, responses, notifs prometheus.Counter
	republished, gaps, transferred        prometheus.Counter
	added, vanished                       prometheus.Counter
	outstanding                           prometheus.Gauge
}

func newMetrics(env *connectors.Env) metrics {
	reg := env.Metrics.Reg
	counter := func(name, help string) prometheus.Counter {
		return connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"module"})).WithLabelValues(env.Name)
	}
	return metrics{
		sessions:  counter("ferry_opcua_sessions_total", "OPC UA sessions opened."),
		rebuilds:  counter("ferry_opcua_watchdog_rebuilds_total", "OPC UA subscriptions rebuilt because they fell silent."),
		responses: counter("ferry_opcua_publish_responses_total", "OPC UA publish responses that carried notifications."),
		notifs:    counter("ferry_opcua_notifications_total", "OPC UA data change notifications received."),
		republished: counter("ferry_opcua_republished_total",
			"OPC UA NotificationMessages that went missing and were recovered with Republish."),
		gaps: counter("ferry_opcua_notification_gaps_total",
			"OPC UA NotificationMessages lost for good (sequence numbers neither received nor republished); later ones were emitted past them."),
		transferred: counter("ferry_opcua_subscriptions_transferred_total",
			"OPC UA subscriptions taken over from a lost session with TransferSubscriptions (not created again)."),
		added: counter("ferry_opcua_browse_nodes_added_total",
			"OPC UA variables a browse_every run found under a browse root and subscribed without a restart."),
		vanished: counter("ferry_opcua_browse_nodes_vanished_total",
			"OPC UA variables a browse_every run no longer found under their browse root."),
		outstanding: connectors.Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_opcua_publish_outstanding", Help: "OPC UA Publish requests waiting at the server.",
		}, []string{"module"})).WithLabelValues(env.Name),
	}
}

// logBurst logs a warning once per burst.
func (o *OPCUA) logBurst(msg string, attrs ...slog.Attr) {
	o.burst.Log(o.env.Logger, slog.LevelWarn, msg, attrs...)
}

// tagTable maps tags to nodes for write-back.
type tagTable struct {
	byTag map[string]*item
}

// WriteTag implements connectors.Writer: it converts v to the node's data
// type (read from the server once per session) and writes it. A write the
// server refuses returns a *StatusError carrying the StatusCode.
func (o *OPCUA) WriteTag(ctx context.Context, device, tag string, v bus.Value) error {
	if device != o.device {
		return fmt.Errorf("%w: device %q (this connector serves %q)", connectors.ErrUnknownTag, device, o.device)
	}
	t := o.table.Load()
	if t == nil {
		return fmt.Errorf("%s/%s: %w", device, tag, connectors.ErrNotConnected)
	}
	s := o.cur.Load()
	it := t.byTag[tag]
	if it == nil {
		if s != nil {
			if m := s.methods[tag]; m != nil {
				return s.callMethod(ctx, m, v)
			}
			if ok, err := o.conditionCommand(ctx, s, tag, v); ok {
				return err
			}
		}
		return fmt.Errorf("%w: %s/%s", connectors.ErrUnknownTag, device, tag)
	}
	if s == nil {
		return fmt.Errorf("%s/%s: %w", device, tag, connectors.ErrNotConnected)
	}
	return s.write(ctx, it, v)
}

// TagWritable says whether the page may offer a write for a tag: from the
// node's UserAccessLevel as the server told this session (CurrentWrite);
// a method is always called. known is false for a tag this connector does
// not read, or whose access level the server did not give.
func (o *OPCUA) TagWritable(device, tag string) (writable, known bool) {
	t := o.table.Load()
	if device != o.device || t == nil {
		return false, false
	}
	if it := t.byTag[tag]; it != nil {
		return it.access&byte(ua.AccessLevelTypeCurrentWrite) != 0, it.accessOK
	}
	if s := o.cur.Load(); s != nil && s.methods[tag] != nil {
		return true, true
	}
	return false, false
}

var (
	_ connectors.Source    = (*OPCUA)(nil)
	_ connectors.Writer    = (*OPCUA)(nil)
	_ connectors.Defaulter = (*OPCUA)(nil)
)
