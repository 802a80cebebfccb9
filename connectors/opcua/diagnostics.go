package opcua

import (
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/connectors"
)

// Session states in Diagnostics.
const (
	SessionConnecting = "connecting"
	SessionOpen       = "open"
	SessionDown       = "down"
)

// sessionInfo is what the status page shows of the current session; the
// session goroutine replaces it whole on every change.
type sessionInfo struct {
	state    string
	since    time.Time
	endpoint string // the URL of the endpoint picked from GetEndpoints
	policy   string
	mode     string
}

// rateWindow turns the notification counter into a rate: the status page
// asks now and then, and each answer is the rate since the sample before
// it (at least rateMin old, so two quick requests do not give noise).
type rateWindow struct {
	mu           sync.Mutex
	at           time.Time
	notifs, resp uint64
	rate, rrate  float64
}

const rateMin = time.Second

func (w *rateWindow) update(now time.Time, notifs, resp uint64) (float64, float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at.IsZero() {
		w.at = now
		return 0, 0
	}
	if dt := now.Sub(w.at); dt >= rateMin {
		w.rate = float64(notifs-w.notifs) / dt.Seconds()
		w.rrate = float64(resp-w.resp) / dt.Seconds()
		w.at, w.notifs, w.resp = now, notifs, resp
	}
	return w.rate, w.rrate
}

// Diagnostics is the OPC UA device as /api/status shows it.
type Diagnostics struct {
	// Session is connecting, open or down, since SessionSince.
	Session      string    `json:"session"`
	SessionSince time.Time `json:"session_since"`
	// Endpoint is the configured URL; EndpointURL the one the server
	// offered and ferry picked (empty before the first connection).
	Endpoint       string `json:"endpoint"`
	EndpointURL    string `json:"endpoint_url,omitempty"`
	SecurityPolicy string `json:"security_policy,omitempty"`
	SecurityMode   string `json:"security_mode,omitempty"`
	Mode           string `json:"mode"` // subscribe or poll
	SessionsOpened uint64 `json:"sessions_opened"`
	Reconnects     uint64 `json:"reconnects"`
	// Subscriptions and MonitoredItems of the current session; BadItems
	// the nodes refused.
	Subscriptions  int `json:"subscriptions"`
	MonitoredItems int `json:"monitored_items"`
	BadItems       int `json:"bad_items"`
	// PublishRate is notifications per second and ResponseRate publish
	// responses per second, over the time since the previous status
	// request (at least a second; 0 at the first).
	PublishRate        float64 `json:"publish_rate"`
	ResponseRate       float64 `json:"publish_response_rate"`
	Notifications      uint64  `json:"notifications"`
	KeepAlives         uint64  `json:"keep_alives"`
	PublishOutstanding int64   `json:"publish_outstanding"`
	// Republished NotificationMessages recovered, NotificationGaps lost for
	// good; Reordered held back behind a missing one.
	Republished      uint64 `json:"republished"`
	NotificationGaps uint64 `json:"notification_gaps"`
	Reordered        uint64 `json:"reordered"`
	Duplicates       uint64 `json:"duplicates"`
	WatchdogRebuilds uint64 `json:"watchdog_rebuilds"`
	// Transferred subscriptions taken over after a blip; TransferFailed
	// those created again.
	Transferred    uint64 `json:"subscriptions_transferred"`
	TransferFailed uint64 `json:"subscriptions_transfer_failed"`
	Reads          uint64 `json:"reads,omitempty"` // poll mode
	NodesAdded     uint64 `json:"browse_nodes_added,omitempty"`
	NodesVanished  uint64 `json:"browse_nodes_vanished,omitempty"`
}

// setSession records a session state change for Diagnostics.
func (o *OPCUA) setSession(state string, ep *ua.EndpointDescription) {
	si := &sessionInfo{state: state, since: time.Now()}
	if prev := o.sess.Load(); prev != nil {
		si.endpoint, si.policy, si.mode = prev.endpoint, prev.policy, prev.mode
	}
	if ep != nil {
		si.endpoint, si.policy = ep.EndpointURL, policyName(ep.SecurityPolicyURI)
		si.mode = strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode")
	}
	o.sess.Store(si)
}

// Diagnostics implements connectors.Diagnoser: the device's session,
// endpoint, security, subscriptions, publish rate and the republish, gap
// and transfer counts, keyed by the device name as other connectors'.
func (o *OPCUA) Diagnostics() any {
	st := o.Stats()
	d := Diagnostics{
		Session: SessionConnecting, Endpoint: o.Endpoint, Mode: o.Mode,
		SessionsOpened: st.Sessions, Reconnects: st.Reconnects,
		Subscriptions: st.Subscriptions, MonitoredItems: st.MonitoredItems, BadItems: st.BadItems,
		Notifications: st.Notifications, KeepAlives: st.KeepAlives, PublishOutstanding: st.PublishOutstanding,
		Republished: st.Republished, NotificationGaps: st.NotificationGaps, Reordered: st.Reordered,
		Duplicates: st.Duplicates, WatchdogRebuilds: st.WatchdogRebuilds,
		Transferred: st.Transferred, TransferFailed: st.TransferFailed, Reads: st.Reads,
		NodesAdded: st.NodesAdded, NodesVanished: st.NodesVanished,
	}
	if si := o.sess.Load(); si != nil {
		d.Session, d.SessionSince = si.state, si.since
		d.EndpointURL, d.SecurityPolicy, d.SecurityMode = si.endpoint, si.policy, si.mode
	}
	d.PublishRate, d.ResponseRate = o.rate.update(time.Now(), st.Notifications, st.PublishResponses)
	return map[string]Diagnostics{o.device: d}
}

var _ connectors.Diagnoser = (*OPCUA)(nil)
