package sparkplug

import (
	"crypto/tls"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/glob"

	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
)

// Link is the MQTT connection both roles share.
type Link struct {
	URL            string         `yaml:"url"`
	ClientID       string         `yaml:"client_id"`
	Username       string         `yaml:"username"`
	Password       string         `yaml:"password"`
	TLS            tlsconf.Config `yaml:"tls"`
	KeepAlive      conf.Duration  `yaml:"keep_alive"`
	ConnectTimeout conf.Duration  `yaml:"connect_timeout"`
	// AckTimeout bounds a publish (handed to the socket at QoS 0, its
	// PUBACK at QoS 1): beyond it the link is taken as stuck and remade.
	AckTimeout   conf.Duration `yaml:"ack_timeout"`
	ReconnectMax conf.Duration `yaml:"reconnect_max"`
}

// EdgeConfig is the edge node sink's section of ferry.yaml.
type EdgeConfig struct {
	Link       `yaml:",inline"`
	GroupID    string `yaml:"group_id"`
	EdgeNodeID string `yaml:"edge_node_id"`
	// PrimaryHostID, when set, makes the node publish only while that
	// host's STATE says online (Sparkplug 3.0); meanwhile the outlet holds
	// the records, which follow the births flagged is_historical.
	PrimaryHostID string `yaml:"primary_host_id"`
	// QoS of births, data and deaths: 0 as the specification requires, or 1
	// to count a batch as delivered only once the broker acknowledged it.
	QoS int `yaml:"qos"`
	// Types overrides the Sparkplug datatype of matching tags (the first
	// match wins); without one, ferry's value kind decides.
	Types    []TypeRule `yaml:"types"`
	Commands Commands   `yaml:"commands"`
	// DeviceTimeout, when set, sends a device's DDEATH once no record of
	// it has come for that long: its source stopped, crashed or lost the
	// device without reporting BAD values. Its next record births it
	// again. Off by default: a source that reports by exception (an OPC UA
	// subscription with a deadband) may rightly be silent for hours.
	DeviceTimeout conf.Duration `yaml:"device_timeout"`
}

// TypeRule maps tags (a glob over "<device>/<tag>") to a datatype.
type TypeRule struct {
	Tag  string `yaml:"tag"`
	Type string `yaml:"type"`

	g  *glob.Pattern
	dt spb.DataType
}

// Commands is how DCMDs become write-back commands.
type Commands struct {
	Enabled *bool         `yaml:"enabled"` // default true
	Timeout conf.Duration `yaml:"timeout"` // the device's answer; default 5s
	// MaxAge refuses a DCMD whose payload timestamp is older than this
	// (a command queued in a broker during an outage must not act late).
	MaxAge conf.Duration `yaml:"max_age"` // default 1m
}

// HostConfig is the host-ingest source's section of ferry.yaml.
type HostConfig struct {
	Link `yaml:",inline"`
	// Groups are the Sparkplug groups to ingest (spBv1.0/<group>/#); "+"
	// takes every group.
	Groups []string `yaml:"groups"`
	// HostID, when set, makes this a Sparkplug host application that
	// publishes its STATE (online, and offline as its will), so edge nodes
	// that name it as their primary host publish to it.
	HostID string `yaml:"host_id"`
	// Device names the records' device: {group}, {node} and {device};
	// node-level metrics render with {device} empty and the separator
	// before it dropped.
	Device string `yaml:"device"`
	// RebirthTimeout spaces rebirth requests to one node.
	RebirthTimeout conf.Duration `yaml:"rebirth_timeout"`
	BatchSize      int           `yaml:"batch_size"`
	BatchInterval  conf.Duration `yaml:"batch_interval"`
}

// Datatypes a TypeRule may name: the scalar ones a record can carry.
var typeNames = []string{"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
	"Float", "Double", "Boolean", "String", "Text", "DateTime", "Bytes"}

var schemes = map[string]bool{"tcp": false, "mqtt": false, "tls": true, "ssl": true, "mqtts": true}

func (l *Link) setDefaults() {
	if l.KeepAlive == 0 {
		l.KeepAlive = conf.Duration(30 * time.Second)
	}
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = conf.Duration(10 * time.Second)
	}
	if l.AckTimeout == 0 {
		l.AckTimeout = conf.Duration(10 * time.Second)
	}
	if l.ReconnectMax == 0 {
		l.ReconnectMax = conf.Duration(10 * time.Second)
	}
}

func (l *Link) validate(p *conf.Problems) {
	u, err := url.Parse(l.URL)
	switch {
	case l.URL == "":
		p.Add("url", "missing url; expected tcp://HOST:PORT or tls://HOST:PORT")
	case err != nil || u.Host == "" || u.Port() == "":
		p.Add("url", "%q is not a broker URL; expected tcp://HOST:PORT or tls://HOST:PORT", l.URL)
	default:
		if _, ok := schemes[u.Scheme]; !ok {
			p.Add("url", "scheme %q is not one of tcp, mqtt, tls, ssl, mqtts", u.Scheme)
		}
	}
	if l.AckTimeout.D() < 100*time.Millisecond {
		p.Add("ack_timeout", "%v is too short for any broker to answer; use at least 100ms", l.AckTimeout.D())
	}
	if l.KeepAlive.D().Seconds() > 65535 {
		p.Add("keep_alive", "at most 18h12m15s (65535 s)")
	}
	if l.secure() || l.TLS != (tlsconf.Config{}) {
		p.Nest("tls", l.TLS.Validate())
	}
}

func (l *Link) secure() bool {
	u, err := url.Parse(l.URL)
	return err == nil && schemes[u.Scheme]
}

func (l *Link) tlsConfig() (*tls.Config, error) {
	if !l.secure() {
		return nil, nil
	}
	u, _ := url.Parse(l.URL)
	return l.TLS.Build(u.Hostname())
}

// validID checks a Sparkplug id: UTF-8 without the MQTT reserved
// characters (tck-id-topic-structure-namespace-valid-*).
func validID(p *conf.Problems, path, id string) {
	switch {
	case id == "":
		p.Add(path, "missing")
	case strings.ContainsAny(id, "+/#"):
		p.Add(path, "%q may not contain +, / or #", id)
	}
}

// SetDefaults fills what the file left out.
func (c *EdgeConfig) SetDefaults() {
	c.Link.setDefaults()
	if c.Commands.Enabled == nil {
		t := true
		c.Commands.Enabled = &t
	}
	if c.Commands.Timeout == 0 {
		c.Commands.Timeout = conf.Duration(5 * time.Second)
	}
	if c.Commands.MaxAge == 0 {
		c.Commands.MaxAge = conf.Duration(time.Minute)
	}
}

// Validate checks the config without I/O but for the TLS files.
func (c *EdgeConfig) Validate() error {
	var p conf.Problems
	c.Link.validate(&p)
	validID(&p, "group_id", c.GroupID)
	validID(&p, "edge_node_id", c.EdgeNodeID)
	if c.PrimaryHostID != "" {
		validID(&p, "primary_host_id", c.PrimaryHostID)
	}
	if c.QoS != 0 && c.QoS != 1 {
		p.Add("qos", "%d is not 0 or 1", c.QoS)
	}
	for i := range c.Types {
		r := &c.Types[i]
		path := "types[" + strconv.Itoa(i) + "]"
		g, err := glob.Compile(r.Tag, '/')
		if err != nil || r.Tag == "" {
			p.Add(path+".tag", "%q is not a glob over <device>/<tag>", r.Tag)
		}
		r.g = g
		if !slices.Contains(typeNames, r.Type) {
			p.Add(path+".type", "%q is not one of %s", r.Type, strings.Join(typeNames, ", "))
		} else {
			r.dt = spb.DataType(spb.DataType_value[r.Type])
		}
	}
	if c.Commands.Timeout.D() <= 0 {
		p.Add("commands.timeout", "must be positive")
	}
	if c.DeviceTimeout < 0 {
		p.Add("device_timeout", "must not be negative (0 turns it off)")
	}
	return p.Err()
}

// SetDefaults fills what the file left out.
func (c *HostConfig) SetDefaults() {
	c.Link.setDefaults()
	if c.Device == "" {
		c.Device = "{node}/{device}"
	}
	if c.RebirthTimeout == 0 {
		c.RebirthTimeout = conf.Duration(5 * time.Second)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = conf.Duration(20 * time.Millisecond)
	}
}

// Validate checks the config without I/O but for the TLS files.
func (c *HostConfig) Validate() error {
	var p conf.Problems
	c.Link.validate(&p)
	if len(c.Groups) == 0 {
		p.Add("groups", "missing; name the Sparkplug groups to ingest, or \"+\" for every group")
	}
	for i, g := range c.Groups {
		if g != "+" {
			validID(&p, "groups["+strconv.Itoa(i)+"]", g)
		}
	}
	if c.HostID != "" {
		validID(&p, "host_id", c.HostID)
	}
	if !strings.Contains(c.Device, "{node}") && !strings.Contains(c.Device, "{device}") {
		p.Add("device", "%q names neither {node} nor {device}: every node's records would share one device", c.Device)
	}
	if c.BatchSize < 1 {
		p.Add("batch_size", "must be at least 1")
	}
	return p.Err()
}
