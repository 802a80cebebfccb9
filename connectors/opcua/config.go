package opcua

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/glob"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the opcua connector's section of ferry.yaml.
type Config struct {
	// Endpoint is the server's URL, opc.tcp://HOST[:PORT][/PATH]. The
	// connector asks it for its endpoints and picks one by Security.
	Endpoint string `yaml:"endpoint"`
	// Device is Record.Device of every record; default the instance name.
	Device   string         `yaml:"device"`
	Security SecurityConfig `yaml:"security"`
	Auth     AuthConfig     `yaml:"auth"`
	// Mode is subscribe (monitored items, the default) or poll (batched
	// Read calls, for servers without subscriptions).
	Mode         string             `yaml:"mode"`
	Subscription SubscriptionConfig `yaml:"subscription"`
	Poll         PollConfig         `yaml:"poll"`
	Nodes        []NodeConfig       `yaml:"nodes"`
	Browse       []BrowseConfig     `yaml:"browse"`
	// BrowseEvery re-runs the browse roots this often while subscribed:
	// nodes that appear are subscribed, nodes that vanish are reported.
	// Unset (the default), they are browsed once per session.
	BrowseEvery conf.Duration `yaml:"browse_every"`
	// Events subscribes to events and alarms of notifier nodes.
	Events []EventConfig `yaml:"events"`
	// Methods are methods callable through write-back, by their name.
	Methods []MethodConfig `yaml:"methods"`
	// UnitsFromServer fills a tag's unit from the node's EngineeringUnits
	// property when the config gives none; default true.
	UnitsFromServer *bool `yaml:"units_from_server"`
	// Timeout bounds each service call (connect, browse, read, write).
	Timeout   conf.Duration   `yaml:"timeout"`
	Reconnect ReconnectConfig `yaml:"reconnect"`
	// ServerTimestamp keeps the server timestamp of each value in the
	// record's attrs as server_ts (RFC 3339); default true.
	ServerTimestamp *bool `yaml:"server_timestamp"`
}

// SecurityConfig picks the endpoint and holds the application's identity
// and trust list.
type SecurityConfig struct {
	// Policy is None, Basic256Sha256, Aes128_Sha256_RsaOaep,
	// Aes256_Sha256_RsaPss (or the deprecated Basic128Rsa15, Basic256), or
	// auto: the most secure endpoint the server offers.
	Policy string `yaml:"policy"`
	// Mode is None, Sign or SignAndEncrypt; default None for policy None,
	// SignAndEncrypt otherwise.
	Mode string `yaml:"mode"`
	// Certificate and PrivateKey are the application instance certificate
	// (DER or PEM) and its RSA key (PEM). Unset, both are generated on
	// first run into <data_dir>/<name>/pki/own/.
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
	// ApplicationURI goes into a generated certificate and the session;
	// default urn:ferry:<hostname>:<instance name>.
	ApplicationURI string `yaml:"application_uri"`
	// TrustDir holds the trusted server (or CA) certificates, DER or PEM;
	// default <data_dir>/<name>/pki/trusted. Rejected certificates are
	// saved next to it in rejected/ for an operator to move over.
	TrustDir string `yaml:"trust_dir"`
	// TrustOnFirstUse trusts (and saves) a server certificate when no
	// certificate with its application URI is trusted yet. Off by default.
	TrustOnFirstUse bool `yaml:"trust_on_first_use"`
}

// AuthConfig is the user identity of the session.
type AuthConfig struct {
	// Type is anonymous (default), username or certificate.
	Type     string `yaml:"type"`
	Username string `yaml:"username"`
	// Password is best given as ${ENV_VAR} or ${file:/path}.
	Password string `yaml:"password"`
	// Certificate and PrivateKey are the user certificate (DER or PEM) and
	// its key (PEM) for type certificate.
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
}

// SubscriptionConfig sets up monitored items.
type SubscriptionConfig struct {
	PublishingInterval conf.Duration `yaml:"publishing_interval"`
	// SamplingInterval asks the server to sample this often; unset means
	// "as fast as the publishing interval" (-1 on the wire), 0s the
	// fastest the server can.
	SamplingInterval *conf.Duration `yaml:"sampling_interval"`
	QueueSize        uint32         `yaml:"queue_size"`
	DiscardOldest    *bool          `yaml:"discard_oldest"`
	// Trigger is status, status_value (default) or status_value_timestamp.
	Trigger  string         `yaml:"trigger"`
	Deadband DeadbandConfig `yaml:"deadband"`
	// KeepaliveCount is publishing intervals without data before the
	// server sends a keep-alive; LifetimeCount those without a Publish
	// request before it drops the subscription (at least 3×keep-alive).
	KeepaliveCount uint32 `yaml:"keepalive_count"`
	LifetimeCount  uint32 `yaml:"lifetime_count"`
	// MaxItemsPerSubscription splits large node sets across subscriptions.
	MaxItemsPerSubscription int `yaml:"max_items_per_subscription"`
	// MaxItemsPerCall caps CreateMonitoredItems calls when the server does
	// not state MaxMonitoredItemsPerCall (a smaller server limit wins).
	MaxItemsPerCall int `yaml:"max_items_per_call"`
	// PublishRequests is how many Publish requests are kept outstanding;
	// 0 = one per subscription plus one.
	PublishRequests int `yaml:"publish_requests"`
	// Watchdog is how long a subscription may stay silent (no data, no
	// keep-alive) before it is deleted and created again; default three
	// keep-alive periods (publishing_interval × keepalive_count × 3).
	Watchdog conf.Duration `yaml:"watchdog"`
}

// DeadbandConfig filters small changes on the server.
type DeadbandConfig struct {
	// Type is none (default), absolute or percent (of the EURange).
	Type  string  `yaml:"type"`
	Value float64 `yaml:"value"`
}

// PollConfig sets up poll mode.
type PollConfig struct {
	Interval conf.Duration `yaml:"interval"`
	// MaxNodesPerRead caps a Read call when the server does not state
	// MaxNodesPerRead (a smaller server limit wins).
	MaxNodesPerRead int `yaml:"max_nodes_per_read"`
	// MaxAge lets the server answer from its cache if no older than this.
	MaxAge conf.Duration `yaml:"max_age"`
}

// NodeConfig is one node given explicitly, by NodeId or browse path.
type NodeConfig struct {
	// ID is a NodeId: ns=2;s=Line1.Temp, ns=3;i=1001, or with the
	// namespace URI (resolved again on every connect): nsu=urn:x;s=Temp.
	ID string `yaml:"id"`
	// Path is a browse path from the Objects folder, names separated by
	// "/", each optionally qualified by a namespace index: 2:Plant/2:Temp.
	Path string `yaml:"path"`
	// Name is the tag; default the path, or the NodeId's identifier.
	Name string `yaml:"name"`
	Unit string `yaml:"unit"`
	// The monitored item settings of this node, over the subscription's.
	Monitor MonitorConfig `yaml:",inline"`
}

// MonitorConfig overrides the subscription's monitored item settings for
// some nodes; what it leaves unset comes from the subscription section.
type MonitorConfig struct {
	SamplingInterval *conf.Duration  `yaml:"sampling_interval"`
	QueueSize        *uint32         `yaml:"queue_size"`
	DiscardOldest    *bool           `yaml:"discard_oldest"`
	Trigger          string          `yaml:"trigger"`
	Deadband         *DeadbandConfig `yaml:"deadband"`
}

func (m MonitorConfig) set() bool {
	return m.SamplingInterval != nil || m.QueueSize != nil || m.DiscardOldest != nil || m.Trigger != "" || m.Deadband != nil
}

// EventConfig subscribes to the events of one notifier node.
type EventConfig struct {
	// Node is the notifier's NodeId; default the Server object (i=2253),
	// which reports every event of the server.
	Node string `yaml:"node"`
	// Prefix goes before <source name>/<event type> to make the tag.
	Prefix string `yaml:"prefix"`
	// Fields are more BaseEventType fields (browse names, a/b for a
	// path) to select; each lands in attrs under its name.
	Fields conf.StringList `yaml:"fields"`
	// Types keeps only events of these types or their subtypes (NodeIds,
	// e.g. i=2915 for AlarmConditionType): an OfType where clause.
	Types conf.StringList `yaml:"types"`
	// MinSeverity keeps only events of at least this severity (1…1000).
	MinSeverity uint16 `yaml:"min_severity"`
}

// MethodConfig is one method callable through write-back.
type MethodConfig struct {
	// Name is the tag a command names (cmd/<device>/<name>).
	Name string `yaml:"name"`
	// Path is the method's browse path; the object it is called on is
	// the path's parent. Or give ID and Object as NodeIds.
	Path   string `yaml:"path"`
	ID     string `yaml:"id"`
	Object string `yaml:"object"`
}

// BrowseConfig discovers the variables under a node.
type BrowseConfig struct {
	// Root is the NodeId (or RootPath the browse path) to start from;
	// default the Objects folder.
	Root     string `yaml:"root"`
	RootPath string `yaml:"root_path"`
	// Depth is how many levels below the root to go; default 10.
	Depth int `yaml:"depth"`
	// Include and Exclude are globs on the tag path below the root ("*"
	// matches within one level, "**" across levels); default include all.
	Include conf.StringList `yaml:"include"`
	Exclude conf.StringList `yaml:"exclude"`
	// Prefix is put before the path below the root to make the tag.
	Prefix string `yaml:"prefix"`
	// The monitored item settings of the nodes found, over the
	// subscription's.
	Monitor MonitorConfig `yaml:",inline"`
}

// ReconnectConfig is the back-off between connection attempts.
type ReconnectConfig struct {
	Min conf.Duration `yaml:"min"`
	Max conf.Duration `yaml:"max"`
}

// MinBrowseEvery is the shortest browse_every.
const MinBrowseEvery = time.Second

// Defaults.
const (
	DefaultPublishingInterval = time.Second
	DefaultKeepaliveCount     = 10
	DefaultMaxItemsPerSub     = 2500
	DefaultMaxItemsPerCall    = 1000
	DefaultPollInterval       = time.Second
	DefaultMaxNodesPerRead    = 1000
	DefaultTimeout            = 10 * time.Second
	DefaultReconnectMin       = time.Second
	DefaultReconnectMax       = time.Minute
	DefaultBrowseDepth        = 10
)

// The accepted names.
var (
	Policies   = []string{"None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "Basic128Rsa15", "Basic256", "auto"}
	Modes      = []string{"None", "Sign", "SignAndEncrypt"}
	AuthTypes  = []string{"anonymous", "username", "certificate"}
	RunModes   = []string{"subscribe", "poll"}
	Triggers   = []string{"status", "status_value", "status_value_timestamp"}
	Deadbands  = []string{"none", "absolute", "percent"}
	policyURIs = map[string]string{
		"None":                  ua.SecurityPolicyURINone,
		"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
		"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
		"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
		"Basic128Rsa15":         ua.SecurityPolicyURIBasic128Rsa15,
		"Basic256":              ua.SecurityPolicyURIBasic256,
	}
	securityModes = map[string]ua.MessageSecurityMode{
		"None": ua.MessageSecurityModeNone, "Sign": ua.MessageSecurityModeSign, "SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
	}
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = "subscribe"
	}
	if c.Security.Policy == "" {
		c.Security.Policy = "None"
	}
	if c.Security.Mode == "" {
		if c.Security.Policy == "None" {
			c.Security.Mode = "None"
		} else {
			c.Security.Mode = "SignAndEncrypt"
		}
	}
	if c.Auth.Type == "" {
		c.Auth.Type = "anonymous"
	}
	s := &c.Subscription
	if s.PublishingInterval == 0 {
		s.PublishingInterval = conf.Duration(DefaultPublishingInterval)
	}
	if s.QueueSize == 0 {
		s.QueueSize = 1
	}
	if s.DiscardOldest == nil {
		t := true
		s.DiscardOldest = &t
	}
	if s.Trigger == "" {
		s.Trigger = "status_value"
	}
	if s.Deadband.Type == "" {
		s.Deadband.Type = "none"
	}
	if s.KeepaliveCount == 0 {
		s.KeepaliveCount = DefaultKeepaliveCount
	}
	if s.LifetimeCount == 0 {
		s.LifetimeCount = 3 * s.KeepaliveCount
	}
	if s.MaxItemsPerSubscription == 0 {
		s.MaxItemsPerSubscription = DefaultMaxItemsPerSub
	}
	if s.MaxItemsPerCall == 0 {
		s.MaxItemsPerCall = DefaultMaxItemsPerCall
	}
	if s.Watchdog == 0 {
		s.Watchdog = conf.Duration(3 * time.Duration(s.KeepaliveCount) * s.PublishingInterval.D())
	}
	if c.Poll.Interval == 0 {
		c.Poll.Interval = conf.Duration(DefaultPollInterval)
	}
	if c.Poll.MaxNodesPerRead == 0 {
		c.Poll.MaxNodesPerRead = DefaultMaxNodesPerRead
	}
	if c.Timeout == 0 {
		c.Timeout = conf.Duration(DefaultTimeout)
	}
	if c.Reconnect.Min == 0 {
		c.Reconnect.Min = conf.Duration(DefaultReconnectMin)
	}
	if c.Reconnect.Max == 0 {
		c.Reconnect.Max = conf.Duration(DefaultReconnectMax)
	}
	if c.ServerTimestamp == nil {
		t := true
		c.ServerTimestamp = &t
	}
	if c.UnitsFromServer == nil {
		t := true
		c.UnitsFromServer = &t
	}
	for i := range c.Browse {
		if c.Browse[i].Depth == 0 {
			c.Browse[i].Depth = DefaultBrowseDepth
		}
	}
}

// Validate checks the config without I/O and reports every problem.
func (c *Config) Validate() error {
	var p conf.Problems
	if err := checkEndpoint(c.Endpoint); err != nil {
		p.Add("endpoint", "%v", err)
	}
	if !oneOf(Policies, c.Security.Policy) {
		p.Add("security.policy", "%q is not one of %s", c.Security.Policy, strings.Join(Policies, ", "))
	}
	if !oneOf(Modes, c.Security.Mode) {
		p.Add("security.mode", "%q is not one of %s", c.Security.Mode, strings.Join(Modes, ", "))
	} else if c.Security.Policy == "None" && c.Security.Mode != "None" {
		p.Add("security.mode", "policy None has no %s mode; choose a policy such as Basic256Sha256, or mode None", c.Security.Mode)
	} else if c.Security.Policy != "None" && c.Security.Policy != "auto" && c.Security.Mode == "None" {
		p.Add("security.mode", "policy %s needs mode Sign or SignAndEncrypt", c.Security.Policy)
	}
	if (c.Security.Certificate == "") != (c.Security.PrivateKey == "") {
		p.Add("security.private_key", "certificate and private_key go together; give both or neither (then they are generated)")
	}
	if c.Security.ApplicationURI != "" {
		if u, err := url.Parse(c.Security.ApplicationURI); err != nil || u.Scheme == "" {
			p.Add("security.application_uri", "%q is not a URI such as urn:ferry:gateway1", c.Security.ApplicationURI)
		}
	}
	switch c.Auth.Type {
	case "anonymous":
	case "username":
		if c.Auth.Username == "" {
			p.Add("auth.username", "missing user name for auth type username")
		}
	case "certificate":
		if c.Auth.Certificate == "" {
			p.Add("auth.certificate", "missing user certificate for auth type certificate")
		}
		if c.Auth.PrivateKey == "" {
			p.Add("auth.private_key", "missing user private key for auth type certificate")
		}
	default:
		p.Add("auth.type", "%q is not one of %s", c.Auth.Type, strings.Join(AuthTypes, ", "))
	}
	if !oneOf(RunModes, c.Mode) {
		p.Add("mode", "%q is not one of %s", c.Mode, strings.Join(RunModes, ", "))
	}
	s := c.Subscription
	if s.PublishingInterval < conf.Duration(time.Millisecond) {
		p.Add("subscription.publishing_interval", "must be at least 1ms, got %s", s.PublishingInterval)
	}
	if !oneOf(Triggers, s.Trigger) {
		p.Add("subscription.trigger", "%q is not one of %s", s.Trigger, strings.Join(Triggers, ", "))
	}
	switch s.Deadband.Type {
	case "none":
	case "absolute", "percent":
		if s.Deadband.Value < 0 || (s.Deadband.Type == "percent" && s.Deadband.Value > 100) {
			p.Add("subscription.deadband.value", "%g is out of range (absolute: ≥ 0, percent: 0…100)", s.Deadband.Value)
		}
	default:
		p.Add("subscription.deadband.type", "%q is not one of %s", s.Deadband.Type, strings.Join(Deadbands, ", "))
	}
	if s.LifetimeCount < 3*s.KeepaliveCount {
		p.Add("subscription.lifetime_count", "must be at least 3 × keepalive_count (%d), got %d", 3*s.KeepaliveCount, s.LifetimeCount)
	}
	if s.MaxItemsPerSubscription < 1 {
		p.Add("subscription.max_items_per_subscription", "must be at least 1, got %d", s.MaxItemsPerSubscription)
	}
	if s.MaxItemsPerCall < 1 {
		p.Add("subscription.max_items_per_call", "must be at least 1, got %d", s.MaxItemsPerCall)
	}
	if s.PublishRequests < 0 || s.PublishRequests > 100 {
		p.Add("subscription.publish_requests", "must be between 0 (automatic) and 100, got %d", s.PublishRequests)
	}
	if s.Watchdog.D() < s.PublishingInterval.D()*time.Duration(s.KeepaliveCount) {
		p.Add("subscription.watchdog", "%s is shorter than a keep-alive period (publishing_interval × keepalive_count = %s); healthy subscriptions would be rebuilt",
			s.Watchdog, s.PublishingInterval.D()*time.Duration(s.KeepaliveCount))
	}
	if c.Poll.Interval <= 0 {
		p.Add("poll.interval", "must be positive")
	}
	if c.Poll.MaxNodesPerRead < 1 {
		p.Add("poll.max_nodes_per_read", "must be at least 1, got %d", c.Poll.MaxNodesPerRead)
	}
	if c.Timeout <= 0 {
		p.Add("timeout", "must be positive")
	}
	if c.Reconnect.Max < c.Reconnect.Min {
		p.Add("reconnect.max", "%s is below reconnect.min (%s)", c.Reconnect.Max, c.Reconnect.Min)
	}
	if len(c.Nodes) == 0 && len(c.Browse) == 0 && len(c.Events) == 0 {
		p.Add("nodes", "no nodes: list nodes, browse roots or events (or several)")
	}
	switch {
	case c.BrowseEvery == 0:
	case c.BrowseEvery.D() < MinBrowseEvery:
		p.Add("browse_every", "%s is below the minimum %s (each run browses every root again)", c.BrowseEvery, conf.Duration(MinBrowseEvery))
	case len(c.Browse) == 0:
		p.Add("browse_every", "there are no browse roots to re-run; add browse entries or remove browse_every")
	case c.Mode == "poll":
		p.Add("browse_every", "works with mode subscribe only; in poll mode the roots are browsed once per session")
	}
	for i, e := range c.Events {
		path := fmt.Sprintf("events[%d]", i)
		if c.Mode == "poll" {
			p.Add(path, "events need mode subscribe")
		}
		if e.Node != "" {
			if _, err := ParseNodeRef(e.Node); err != nil {
				p.Add(path+".node", "%v", err)
			}
		}
		for j, t := range e.Types {
			if _, err := ParseNodeRef(t); err != nil {
				p.Add(fmt.Sprintf("%s.types[%d]", path, j), "%v", err)
			}
		}
		if e.MinSeverity > 1000 {
			p.Add(path+".min_severity", "must be between 0 and 1000, got %d", e.MinSeverity)
		}
		for j, f := range e.Fields {
			if f == "" || strings.HasPrefix(f, "/") || strings.HasSuffix(f, "/") {
				p.Add(fmt.Sprintf("%s.fields[%d]", path, j), "%q is not a field browse name such as Quality or ActiveState/Id", f)
			}
		}
	}
	methods := map[string]int{}
	for i, m := range c.Methods {
		path := fmt.Sprintf("methods[%d]", i)
		if m.Name == "" {
			p.Add(path+".name", "missing name: the tag a command names")
		} else if j, dup := methods[m.Name]; dup {
			p.Add(path+".name", "method %q is already methods[%d]", m.Name, j)
		}
		methods[m.Name] = i
		switch {
		case m.Path != "" && (m.ID != "" || m.Object != ""):
			p.Add(path+".path", "give path, or id and object, not both")
		case m.Path != "":
			if steps, err := ParseBrowsePath(m.Path); err != nil {
				p.Add(path+".path", "%v", err)
			} else if len(steps) < 2 {
				p.Add(path+".path", "%q names no object: the path is the object's, then the method's name", m.Path)
			}
		case m.ID == "" || m.Object == "":
			p.Add(path, "missing path (a browse path such as 2:Plant/2:Mixer/2:Mix), or id and object (NodeIds)")
		default:
			if _, err := ParseNodeRef(m.ID); err != nil {
				p.Add(path+".id", "%v", err)
			}
			if _, err := ParseNodeRef(m.Object); err != nil {
				p.Add(path+".object", "%v", err)
			}
		}
	}
	names := map[string]int{}
	for i, n := range c.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		n.Monitor.validate(&p, path)
		switch {
		case n.ID != "" && n.Path != "":
			p.Add(path+".path", "give id or path, not both")
		case n.ID != "":
			if _, err := ParseNodeRef(n.ID); err != nil {
				p.Add(path+".id", "%v", err)
			}
		case n.Path != "":
			if _, err := ParseBrowsePath(n.Path); err != nil {
				p.Add(path+".path", "%v", err)
			}
		default:
			p.Add(path, "missing id (a NodeId such as ns=2;s=Temp) or path (a browse path such as 2:Plant/2:Temp)")
		}
		if n.Name != "" {
			if j, dup := names[n.Name]; dup {
				p.Add(path+".name", "tag %q is already nodes[%d]", n.Name, j)
			}
			names[n.Name] = i
		}
	}
	for i, b := range c.Browse {
		path := fmt.Sprintf("browse[%d]", i)
		b.Monitor.validate(&p, path)
		switch {
		case b.Root != "" && b.RootPath != "":
			p.Add(path+".root_path", "give root or root_path, not both")
		case b.Root != "":
			if _, err := ParseNodeRef(b.Root); err != nil {
				p.Add(path+".root", "%v", err)
			}
		case b.RootPath != "":
			if _, err := ParseBrowsePath(b.RootPath); err != nil {
				p.Add(path+".root_path", "%v", err)
			}
		}
		if b.Depth < 1 || b.Depth > 64 {
			p.Add(path+".depth", "must be between 1 and 64, got %d", b.Depth)
		}
		for j, g := range b.Include {
			if _, err := glob.Compile(g, '/'); err != nil {
				p.Add(fmt.Sprintf("%s.include[%d]", path, j), "%q is not a valid glob: %v", g, err)
			}
		}
		for j, g := range b.Exclude {
			if _, err := glob.Compile(g, '/'); err != nil {
				p.Add(fmt.Sprintf("%s.exclude[%d]", path, j), "%q is not a valid glob: %v", g, err)
			}
		}
	}
	return p.Err()
}

func (m MonitorConfig) validate(p *conf.Problems, path string) {
	if m.SamplingInterval != nil && *m.SamplingInterval < 0 {
		p.Add(path+".sampling_interval", "must not be negative")
	}
	if m.Trigger != "" && !oneOf(Triggers, m.Trigger) {
		p.Add(path+".trigger", "%q is not one of %s", m.Trigger, strings.Join(Triggers, ", "))
	}
	if d := m.Deadband; d != nil {
		switch d.Type {
		case "none":
		case "absolute", "percent":
			if d.Value < 0 || (d.Type == "percent" && d.Value > 100) {
				p.Add(path+".deadband.value", "%g is out of range (absolute: ≥ 0, percent: 0…100)", d.Value)
			}
		default:
			p.Add(path+".deadband.type", "%q is not one of %s", d.Type, strings.Join(Deadbands, ", "))
		}
	}
}

func oneOf(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkEndpoint accepts opc.tcp://HOST[:PORT][/PATH].
func checkEndpoint(s string) error {
	if s == "" {
		return fmt.Errorf("missing endpoint; expected opc.tcp://HOST[:PORT][/PATH]")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL; expected opc.tcp://HOST[:PORT][/PATH]", s)
	}
	if u.Scheme != "opc.tcp" {
		return fmt.Errorf("%q: scheme must be opc.tcp, expected opc.tcp://HOST[:PORT][/PATH]", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host; expected opc.tcp://HOST[:PORT][/PATH]", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not a number between 1 and 65535", s, port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%q: empty port", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: user info, query and fragment are not allowed in an endpoint URL", s)
	}
	if _, _, err := net.SplitHostPort(hostPort(u)); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	return nil
}

// hostPort returns u's host with the OPC UA default port 4840 when none is given.
func hostPort(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "4840")
	}
	return u.Host
}

// NodeRef is a parsed NodeId from the config: the identifier with either a
// namespace index or a namespace URI still to be resolved.
type NodeRef struct {
	URI string     // namespace URI (nsu=), resolved against the server's namespace array
	ID  *ua.NodeID // the identifier; its namespace is the index when URI is empty
}

// ParseNodeRef parses ns=<index>;<type>=<id>, nsu=<uri>;<type>=<id> or
// <type>=<id> (namespace 0), where type is i, s, g or b.
func ParseNodeRef(s string) (NodeRef, error) {
	const want = "expected ns=<index>;s=<name>, ns=<index>;i=<number>, nsu=<uri>;s=<name> (also g= for GUIDs, b= for base64)"
	if s == "" {
		return NodeRef{}, fmt.Errorf("empty NodeId; %s", want)
	}
	nsPart, idPart := "", s
	if i := strings.Index(s, ";"); i >= 0 {
		nsPart, idPart = s[:i], s[i+1:]
	}
	var ref NodeRef
	text := idPart
	switch {
	case nsPart == "":
	case strings.HasPrefix(nsPart, "nsu="):
		ref.URI = nsPart[4:]
		if ref.URI == "" {
			return NodeRef{}, fmt.Errorf("%q: empty namespace URI; %s", s, want)
		}
	case strings.HasPrefix(nsPart, "ns="):
		n, err := strconv.ParseUint(nsPart[3:], 10, 16)
		if err != nil {
			return NodeRef{}, fmt.Errorf("%q: namespace index %q is not a number 0…65535; %s", s, nsPart[3:], want)
		}
		text = "ns=" + strconv.FormatUint(n, 10) + ";" + idPart
	default:
		return NodeRef{}, fmt.Errorf("%q: %q is neither ns=<index> nor nsu=<uri>; %s", s, nsPart, want)
	}
	if len(idPart) < 2 || idPart[1] != '=' || !strings.ContainsRune("isgb", rune(idPart[0])) {
		return NodeRef{}, fmt.Errorf("%q: identifier %q does not start with i=, s=, g= or b=; %s", s, idPart, want)
	}
	if idPart[0] == 's' && len(idPart) == 2 {
		return NodeRef{}, fmt.Errorf("%q: empty string identifier; %s", s, want)
	}
	id, err := ua.ParseNodeID(text)
	if err != nil {
		return NodeRef{}, fmt.Errorf("%q: %v; %s", s, err, want)
	}
	ref.ID = id
	return ref, nil
}

// Resolve returns the NodeId with the namespace URI looked up in the
// server's namespace array.
func (r NodeRef) Resolve(namespaces []string) (*ua.NodeID, error) {
	if r.URI == "" {
		return r.ID, nil
	}
	for i, ns := range namespaces {
		if ns == r.URI {
			id := cloneNodeID(r.ID)
			if err := id.SetNamespace(uint16(i)); err != nil {
				return nil, err
			}
			return id, nil
		}
	}
	return nil, fmt.Errorf("namespace %q is not in the server's namespace array", r.URI)
}

func cloneNodeID(id *ua.NodeID) *ua.NodeID {
	switch id.Type() {
	case ua.NodeIDTypeString:
		return ua.NewStringNodeID(id.Namespace(), id.StringID())
	case ua.NodeIDTypeGUID:
		return ua.NewGUIDNodeID(id.Namespace(), id.StringID())
	case ua.NodeIDTypeByteString:
		b, _ := ua.ParseNodeID("b=" + id.StringID())
		return ua.NewByteStringNodeID(id.Namespace(), []byte(b.StringID()))
	}
	return ua.NewNumericNodeID(id.Namespace(), id.IntID())
}

// BrowseStep is one element of a browse path: a browse name, in a given
// namespace index or (NS < 0) in any.
type BrowseStep struct {
	NS   int
	Name string
}

// ParseBrowsePath parses Name/Name/… where a name may be qualified as
// <index>:Name. A leading "/" or "Objects/" is optional.
func ParseBrowsePath(s string) ([]BrowseStep, error) {
	t := strings.TrimPrefix(s, "/")
	t = strings.TrimPrefix(t, "Objects/")
	t = strings.TrimPrefix(t, "0:Objects/")
	if t == "" {
		return nil, fmt.Errorf("%q: empty browse path; expected names separated by /, such as 2:Plant/2:Temp", s)
	}
	var steps []BrowseStep
	for _, part := range strings.Split(t, "/") {
		st := BrowseStep{NS: -1, Name: part}
		if i := strings.IndexByte(part, ':'); i > 0 {
			if n, err := strconv.ParseUint(part[:i], 10, 16); err == nil {
				st = BrowseStep{NS: int(n), Name: part[i+1:]}
			}
		}
		if st.Name == "" {
			return nil, fmt.Errorf("%q: empty name in browse path; expected names separated by /, such as 2:Plant/2:Temp", s)
		}
		steps = append(steps, st)
	}
	return steps, nil
}
