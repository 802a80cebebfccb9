package natsbus

import (
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
)

// Config is the bus: section when type is nats. Several ferry instances
// with the same url and stream share one bus.
type Config struct {
	// URL lists the servers of the NATS cluster (nats:// or tls://); one
	// is enough, the client learns the others. Empty with embedded set: the
	// embedded server.
	URL conf.StringList `yaml:"url"`
	// Credentials is a NATS .creds file (user JWT and nkey seed).
	Credentials string `yaml:"credentials"`
	// NKey is a file holding an nkey seed.
	NKey     string          `yaml:"nkey"`
	User     string          `yaml:"user"`
	Password string          `yaml:"password"`
	Token    string          `yaml:"token"`
	TLS      *tlsconf.Config `yaml:"tls"`

	// Stream names the JetStream stream between sources and the router;
	// each sink gets "<stream>_<sink>". Subject is the subject prefix.
	Stream  string `yaml:"stream"`
	Subject string `yaml:"subject"`
	// Replicas of every stream ferry creates (1, or 3 on a 3-node cluster).
	Replicas int `yaml:"replicas"`
	// MaxBytes and MaxAge bound the stream of source batches not yet
	// routed; when full, sources wait (nothing already accepted is dropped).
	MaxBytes conf.Size     `yaml:"max_bytes"`
	MaxAge   conf.Duration `yaml:"max_age"`
	// AckWait is how long a batch handed to an instance stays its own
	// before JetStream gives it to another; a live instance extends it
	// while it works, so this is the takeover time after a crash.
	AckWait conf.Duration `yaml:"ack_wait"`

	// Instance names this ferry in leases and on the status page; default
	// hostname-pid. Lease and Heartbeat drive active/standby ownership of
	// source connectors.
	Instance  string        `yaml:"instance"`
	Lease     conf.Duration `yaml:"lease"`
	Heartbeat conf.Duration `yaml:"heartbeat"`

	// Embedded starts a nats-server inside ferry.
	Embedded *EmbeddedConfig `yaml:"embedded"`

	instanceDefaulted bool
}

// EmbeddedConfig is an in-process nats-server with JetStream.
type EmbeddedConfig struct {
	// Listen is host:port for clients; default 127.0.0.1:4222.
	Listen string `yaml:"listen"`
	// StoreDir holds JetStream data; default <data_dir>/nats.
	StoreDir string `yaml:"store_dir"`
	// MaxStore caps JetStream's disk use; default: the server's own.
	MaxStore conf.Size `yaml:"max_store"`
	// Name is the server's name, unique in a cluster; default the instance.
	Name    string         `yaml:"name"`
	Cluster *ClusterConfig `yaml:"cluster"`
}

// ClusterConfig joins the embedded server to a NATS cluster.
type ClusterConfig struct {
	Name   string          `yaml:"name"`
	Listen string          `yaml:"listen"`
	Routes conf.StringList `yaml:"routes"`
}

// Defaults.
const (
	DefaultStream    = "FERRY"
	DefaultSubject   = "ferry"
	DefaultMaxBytes  = conf.Size(1 << 30)
	DefaultMaxAge    = conf.Duration(24 * time.Hour)
	DefaultAckWait   = conf.Duration(30 * time.Second)
	DefaultLease     = conf.Duration(10 * time.Second)
	DefaultHeartbeat = conf.Duration(2 * time.Second)
	DefaultListen    = "127.0.0.1:4222"
)

// SetDefaults fills what was left out. The embedded store directory is
// placed under the data directory at start, when --data-dir is known.
func (c *Config) SetDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Instance == "" {
		c.instanceDefaulted = true
		host, _ := os.Hostname()
		if host == "" {
			host = "ferry"
		}
		c.Instance = host + "-" + strconv.Itoa(os.Getpid())
	}
	if e := c.Embedded; e != nil {
		if e.Listen == "" {
			e.Listen = DefaultListen
		}
		if e.Name == "" {
			e.Name = c.Instance
		}
	}
}

var (
	streamName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	subjectTok = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate checks the section. Paths are relative to bus:.
func (c *Config) Validate() error {
	var p conf.Problems
	if len(c.URL) == 0 && c.Embedded == nil {
		p.Add("url", "missing: the NATS server(s) to connect to, e.g. nats://127.0.0.1:4222 (or set embedded: to run one inside ferry)")
	}
	for i, u := range c.URL {
		path := "url"
		if len(c.URL) > 1 {
			path += "[" + strconv.Itoa(i) + "]"
		}
		if msg := checkURL(u); msg != "" {
			p.Add(path, "%q: %s", u, msg)
		}
	}
	for _, f := range []struct{ field, path string }{{"credentials", c.Credentials}, {"nkey", c.NKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			p.Add(f.field, "%v", err)
		}
	}
	if c.Credentials != "" && c.NKey != "" {
		p.Add("nkey", "credentials and nkey are two ways to authenticate; set one")
	}
	if c.Token != "" && c.User != "" {
		p.Add("token", "token and user/password are two ways to authenticate; set one")
	}
	if (c.User == "") != (c.Password == "") {
		p.Add("password", "user and password go together")
	}
	if c.TLS != nil {
		p.Nest("tls", c.TLS.Validate())
	}
	if !streamName.MatchString(c.Stream) {
		p.Add("stream", "%q: a stream name holds only letters, digits, '_' and '-'", c.Stream)
	}
	if !subjectTok.MatchString(c.Subject) {
		p.Add("subject", "%q: expected dot-separated tokens of letters, digits, '_' and '-' (no wildcards)", c.Subject)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.Add("replicas", "%d: JetStream keeps 1 to 5 replicas", c.Replicas)
	}
	if c.MaxBytes < 1<<20 {
		p.Add("max_bytes", "%s is below 1MiB", c.MaxBytes)
	}
	if c.AckWait.D() < time.Second {
		p.Add("ack_wait", "%s is below 1s", c.AckWait)
	}
	if c.Heartbeat.D() < 100*time.Millisecond {
		p.Add("heartbeat", "%s is below 100ms", c.Heartbeat)
	}
	if c.Lease.D() < 3*c.Heartbeat.D() {
		// The owner gives up Lease - Heartbeat after its last renewal was
		// sent; below three heartbeats one late renewal ends its term.
		p.Add("lease", "%s is shorter than three heartbeats (heartbeat %s): one late renewal would hand the source to another instance", c.Lease, c.Heartbeat)
	}
	if e := c.Embedded; e != nil {
		if e.Cluster == nil && len(c.URL) == 0 && c.Replicas > 1 {
			p.Add("replicas", "%d replicas need a cluster; the embedded server alone keeps 1 (add embedded.cluster, or url: of a cluster)", c.Replicas)
		}
		if msg := checkHostPort(e.Listen); msg != "" {
			p.Add("embedded.listen", "%q: %s", e.Listen, msg)
		}
		if e.MaxStore != 0 && e.MaxStore < 1<<20 {
			p.Add("embedded.max_store", "%s is below 1MiB", e.MaxStore)
		}
		if cl := e.Cluster; cl != nil {
			if e.Name == c.Instance && c.instanceDefaulted {
				// The cluster knows its members by name: one that changes
				// at every restart leaves offline peers behind.
				p.Add("embedded.name", "a cluster node needs a name that stays the same across restarts: set instance (or embedded.name)")
			}
			if !streamName.MatchString(cl.Name) {
				p.Add("embedded.cluster.name", "%q: expected a cluster name of letters, digits, '_' and '-'", cl.Name)
			}
			if msg := checkHostPort(cl.Listen); msg != "" {
				p.Add("embedded.cluster.listen", "%q: %s", cl.Listen, msg)
			}
			for i, r := range cl.Routes {
				if u, err := url.Parse(r); err != nil || u.Scheme != "nats-route" && u.Scheme != "nats" || u.Host == "" {
					p.Add("embedded.cluster.routes["+strconv.Itoa(i)+"]", "%q: expected nats-route://host:port", r)
				}
			}
		}
	}
	return p.Err()
}

func checkURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL: " + strings.TrimPrefix(err.Error(), "parse \""+s+"\": ")
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	case "":
		return "missing scheme; expected nats://host:port"
	default:
		return "scheme " + u.Scheme + " is not nats, tls, ws or wss"
	}
	if u.Hostname() == "" {
		return "missing host; expected nats://host:port"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "port " + p + " is not 1..65535"
		}
	}
	if u.Path != "" && u.Path != "/" {
		return "a NATS URL has no path"
	}
	return ""
}

func checkHostPort(s string) string {
	if _, _, err := conf.HostPort(s); err != nil {
		return err.Error()
	}
	return ""
}
