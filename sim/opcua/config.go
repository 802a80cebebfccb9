package opcua

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

var (
	// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("invalid opcua sim config")
	// ErrClosed is returned by Restart after Close.
	ErrClosed = errors.New("opcua sim closed")
	// ErrUnknownNode is returned by SetValue for a node the simulator does not have.
	ErrUnknownNode = errors.New("unknown node")
	// ErrTypeMismatch is returned by SetValue for a value of the wrong type.
	ErrTypeMismatch = errors.New("type mismatch")
)

// DefaultNamespaceURI is the URI of the Plant namespace.
const DefaultNamespaceURI = "urn:ferry:sim:plant"

// Config describes a simulated OPC UA server.
type Config struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0" (a free
	// port; read it back with Server.Addr or Server.Endpoint).
	Addr string
	// Tags is the number of changing variables under Plant/LineNN; default 100.
	Tags int
	// PerLine is the number of variables per Plant/LineNN folder; default 1000.
	PerLine int
	// Interval is how often every variable changes (one Tick); 0 means
	// values change only through Tick, SetValue or a client's Write.
	Interval time.Duration
	// NamespaceURI names the Plant namespace; default DefaultNamespaceURI.
	NamespaceURI string
	// ExtraNamespaces registers that many empty namespaces before the Plant
	// namespace, shifting its index (see also SetExtraNamespaces).
	ExtraNamespaces int
	// Users, when set, enables user name identity tokens: user → password.
	Users map[string]string
	// DenyAnonymous refuses anonymous sessions.
	DenyAnonymous bool
	// UserCertificates enables X.509 identity tokens for these certificates (DER).
	UserCertificates [][]byte
	// Certificate is the server's application instance certificate; by
	// default one generated once per process with ApplicationURI.
	Certificate *Certificate
	// NoSecurity offers only the None endpoint.
	NoSecurity bool
	// RetransmitQueue is how many sent NotificationMessages each
	// subscription keeps for Republish until the client acknowledges them;
	// default DefaultRetransmitQueue, negative keeps none (Republish then
	// answers BadMessageNotAvailable).
	RetransmitQueue int
	// NoRepublish makes Republish answer BadServiceUnsupported, as
	// gopcua's own server does.
	NoRepublish bool
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Tags == 0 {
		c.Tags = 100
	}
	if c.PerLine == 0 {
		c.PerLine = 1000
	}
	if c.NamespaceURI == "" {
		c.NamespaceURI = DefaultNamespaceURI
	}
	if c.RetransmitQueue == 0 {
		c.RetransmitQueue = DefaultRetransmitQueue
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the config.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		add("addr %q is not host:port", c.Addr)
	}
	if c.Tags < 0 || c.Tags > 1_000_000 {
		add("tags must be between 0 and 1000000, got %d", c.Tags)
	}
	if c.PerLine < 1 {
		add("per_line must be at least 1, got %d", c.PerLine)
	}
	if c.Interval < 0 {
		add("interval must not be negative")
	}
	if c.ExtraNamespaces < 0 || c.ExtraNamespaces > 100 {
		add("extra namespaces must be between 0 and 100")
	}
	if c.NoSecurity && (len(c.Users) > 0 || len(c.UserCertificates) > 0) {
		add("user name and certificate identities need an encrypting endpoint; do not set NoSecurity")
	}
	return errors.Join(errs...)
}
