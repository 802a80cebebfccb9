package localbroker

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/topics"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the embedded broker's section of ferry.yaml.
type Config struct {
	Listeners      Listeners `yaml:"listeners"`
	AllowAnonymous bool      `yaml:"allow_anonymous"`
	Users          []User    `yaml:"users"`
	Topic          string    `yaml:"topic"`
	Format         string    `yaml:"format"`
	// JSONOutput: fields and time_format of the JSON formats.
	bus.JSONOutput `yaml:",inline"`
	Retain         bool           `yaml:"retain"`
	QoS            int            `yaml:"qos"`
	Subscribe      []Subscription `yaml:"subscribe"`
	BatchSize      int            `yaml:"batch_size"`
	BatchInterval  conf.Duration  `yaml:"batch_interval"`
	Commands       Commands       `yaml:"commands"`
	// MaxQueued is how many messages may wait for one subscriber; beyond
	// it, the broker drops for that subscriber (a dashboard that cannot keep
	// up loses live values, the pipeline does not stall).
	MaxQueued int `yaml:"max_queued"`

	// MaxPacketSize refuses a packet whose fixed header claims more, before
	// its body is read (mochi would otherwise allocate what a client
	// claims, before authentication).
	MaxPacketSize conf.Size `yaml:"max_packet_size"`
	// MaxClients caps the open sockets of all listeners together.
	MaxClients int `yaml:"max_clients"`
	// ConnectTimeout closes a socket that has not sent CONNECT (and, on
	// TLS, finished its handshake) within it.
	ConnectTimeout conf.Duration `yaml:"connect_timeout"`
	// MaxRetained and MaxRetainedBytes bound the retained messages: beyond
	// them a message is delivered but not retained.
	MaxRetained      int       `yaml:"max_retained"`
	MaxRetainedBytes conf.Size `yaml:"max_retained_bytes"`
}

// Limits the broker's options may not exceed.
const (
	// mqttMaxPacket is the largest packet MQTT can frame (a 4-byte
	// remaining length, plus the fixed header).
	mqttMaxPacket = 268435455 + 5
	minPacketSize = 1 << 10
)

// Commands is write-back over the broker: a client with write access to
// <topic>/<device>/<tag> publishes {"value": …}; the writer that owns the
// tag writes it to the device; the outcome is published on
// <results>/<device>/<tag> (or the MQTT 5 response topic).
type Commands struct {
	Topic   string        `yaml:"topic"`   // default "cmd"; "off" disables write-back
	Results string        `yaml:"results"` // default "cmd-result"
	Timeout conf.Duration `yaml:"timeout"` // default 5s
	MaxTTL  conf.Duration `yaml:"max_ttl"` // commands without ttl/expires expire after this; default 1m
}

// Listeners are the broker's sockets.
type Listeners struct {
	TCP       string     `yaml:"tcp"`
	WebSocket string     `yaml:"websocket"`
	TLS       *TLSListen `yaml:"tls"`
}

// TLSListen is a TLS listener.
type TLSListen struct {
	Addr     string `yaml:"addr"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// User is one account: a bcrypt password hash and what it may do.
type User struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
	ACL          []ACL  `yaml:"acl"`
}

// ACL grants access to the topics under a filter.
type ACL struct {
	Filter string `yaml:"filter"`
	Access string `yaml:"access"` // read, write or readwrite
}

// Subscription is one topic filter shims publish on, and how to read it.
type Subscription struct {
	Topic string       `yaml:"topic"`
	Parse parse.Config `yaml:"parse"`
}

var (
	formats  = []string{"json", "json-lines", "json-array", "avro"}
	accesses = []string{"read", "write", "readwrite"}
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Listeners.TCP == "" {
		c.Listeners.TCP = "127.0.0.1:1883"
	}
	if c.Listeners.WebSocket == "" {
		c.Listeners.WebSocket = "off"
	}
	if c.Topic == "" {
		c.Topic = "{site}/{device}/{tag}"
	}
	if c.Format == "" {
		c.Format = "json"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = conf.Duration(20 * time.Millisecond)
	}
	for i := range c.Subscribe {
		c.Subscribe[i].Parse.SetDefaults()
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 4096
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = 1 << 20
	}
	if c.MaxClients == 0 {
		c.MaxClients = 1000
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = conf.Duration(10 * time.Second)
	}
	if c.MaxRetained == 0 {
		c.MaxRetained = 100000
	}
	if c.MaxRetainedBytes == 0 {
		c.MaxRetainedBytes = 64 << 20
	}
	if c.Commands.Topic == "" {
		c.Commands.Topic = "cmd"
	}
	if c.Commands.Results == "" {
		c.Commands.Results = "cmd-result"
	}
	if c.Commands.Timeout == 0 {
		c.Commands.Timeout = conf.Duration(5 * time.Second)
	}
	if c.Commands.MaxTTL == 0 {
		c.Commands.MaxTTL = conf.Duration(time.Minute)
	}
}

// Validate checks the config; certificate files are loaded to be sure.
func (c *Config) Validate() error {
	var p conf.Problems
	addr := func(path, a string) {
		if a == "off" {
			return
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			p.Add(path, "%q is not host:port (or \"off\")", a)
		}
	}
	addr("listeners.tcp", c.Listeners.TCP)
	addr("listeners.websocket", c.Listeners.WebSocket)
	if t := c.Listeners.TLS; t != nil {
		addr("listeners.tls.addr", t.Addr)
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			p.Add("listeners.tls", "certificate: %v", err)
		}
	}
	names := map[string]bool{}
	for i, u := range c.Users {
		path := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			p.Add(path+".name", "missing user name")
		} else if names[u.Name] {
			p.Add(path+".name", "user %q is defined twice", u.Name)
		}
		names[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			p.Add(path+".password_hash", "not a bcrypt hash (make one with `ferry passwd`)")
		}
		for j, a := range u.ACL {
			ap := fmt.Sprintf("%s.acl[%d]", path, j)
			if err := topics.ValidFilter(a.Filter); err != nil {
				p.Add(ap+".filter", "%v", err)
			}
			if !slices.Contains(accesses, a.Access) {
				p.Add(ap+".access", "%q is not one of %s", a.Access, strings.Join(accesses, ", "))
			}
		}
	}
	if _, err := topics.Parse(c.Topic); err != nil {
		p.Add("topic", "%v", err)
	}
	if !slices.Contains(formats, c.Format) {
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(formats, ", "))
	}
	_, isJSON := bus.ParseJSONShape(c.Format)
	c.JSONOutput.Check(isJSON, c.Format, p.Add)
	if c.QoS != 0 && c.QoS != 1 {
		p.Add("qos", "%d is not 0 or 1", c.QoS)
	}
	for i, s := range c.Subscribe {
		path := fmt.Sprintf("subscribe[%d]", i)
		if err := topics.ValidFilter(s.Topic); err != nil {
			p.Add(path+".topic", "%v", err)
		}
		p.Nest(path+".parse", s.Parse.Validate())
	}
	if c.BatchSize < 1 {
		p.Add("batch_size", "must be at least 1")
	}
	if c.MaxQueued < 16 || c.MaxQueued > 1<<24 {
		p.Add("max_queued", "%d is outside 16..16777216", c.MaxQueued)
	}
	if c.MaxPacketSize < minPacketSize || c.MaxPacketSize > mqttMaxPacket {
		p.Add("max_packet_size", "%s is outside 1KiB..256MiB", c.MaxPacketSize)
	}
	if c.MaxClients < 1 {
		p.Add("max_clients", "must be at least 1, got %d", c.MaxClients)
	}
	if c.ConnectTimeout <= 0 {
		p.Add("connect_timeout", "must be positive, got %s", c.ConnectTimeout)
	}
	if c.MaxRetained < 1 {
		p.Add("max_retained", "must be at least 1, got %d", c.MaxRetained)
	}
	if c.MaxRetainedBytes < 1 {
		p.Add("max_retained_bytes", "must be at least 1B, got %s", c.MaxRetainedBytes)
	}
	for _, f := range []struct{ path, topic string }{{"commands.topic", c.Commands.Topic}, {"commands.results", c.Commands.Results}} {
		if f.topic != "off" && (strings.ContainsAny(f.topic, "+#") || strings.HasSuffix(f.topic, "/") || f.topic == "") {
			p.Add(f.path, "%q must be a plain topic prefix such as cmd", f.topic)
		}
	}
	return p.Err()
}
