package mqtt

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/compress"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/topics"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
)

// Config is the MQTT sink's section of ferry.yaml.
type Config struct {
	URL      string         `yaml:"url"`
	Version  string         `yaml:"version"`
	ClientID string         `yaml:"client_id"`
	Username string         `yaml:"username"`
	Password string         `yaml:"password"`
	TLS      tlsconf.Config `yaml:"tls"`
	Topic    string         `yaml:"topic"`
	Format   string         `yaml:"format"`
	// JSONOutput: fields and time_format of the JSON formats.
	bus.JSONOutput `yaml:",inline"`
	KeepAlive      conf.Duration `yaml:"keep_alive"`
	ConnectTimeout conf.Duration `yaml:"connect_timeout"`
	AckTimeout     conf.Duration `yaml:"ack_timeout"`
	// ReconnectMax caps the back-off between connection attempts, so a
	// link that comes back is used again within this time.
	ReconnectMax conf.Duration `yaml:"reconnect_max"`

	// Subscribe makes the connector a source: payloads on these topics are
	// parsed into records.
	Subscribe []Subscription `yaml:"subscribe"`
	// BatchSize and BatchInterval bound how records of many small messages
	// are gathered into one batch on the bus.
	BatchSize     int           `yaml:"batch_size"`
	BatchInterval conf.Duration `yaml:"batch_interval"`

	// Commands takes write-back commands from the cloud broker
	// (commands.go).
	Commands *Commands `yaml:"commands"`
	// Compress compresses every uplink payload: gzip or zstd.
	Compress string `yaml:"compress"`
	// MaxPayload splits a message whose payload would be larger into
	// several (0: no limit); a single record larger still is dropped and
	// counted.
	MaxPayload conf.Size `yaml:"max_payload"`

	// Preset fills the settings a known IoT hub needs (presets.go).
	Preset           string        `yaml:"preset"`
	ConnectionString string        `yaml:"connection_string"`
	TokenTTL         conf.Duration `yaml:"token_ttl"`

	azure    *azureDevice // parsed connection_string
	azureErr error
}

// Commands is write-back from the cloud: a command published on a topic
// under Topic is written to the device that owns the tag, and the outcome
// is published back (the embedded broker's format and rules, see
// connectors/command).
type Commands struct {
	// Topic is a filter ending in /#: <prefix>/<device>/<tag>. {site} and
	// {module} are filled in.
	Topic string `yaml:"topic"`
	// Results is where outcomes go, <results>/<device>/<tag>, unless the
	// command came with an MQTT 5 response topic. Default: the prefix of
	// topic with "-result" appended (ferry/s1/cmd → ferry/s1/cmd-result).
	Results string        `yaml:"results"`
	QoS     int           `yaml:"qos"`     // of the subscription; default 1
	Timeout conf.Duration `yaml:"timeout"` // one write; default 5s
	MaxTTL  conf.Duration `yaml:"max_ttl"` // commands without ttl/expires; default 1m
	// Remember is how many command ids are kept to answer a repeat.
	Remember int `yaml:"remember"`

	// fromPayload: the topic does not name the tag (Azure's
	// cloud-to-device topic); the payload does.
	fromPayload bool
}

// Subscription is one topic filter and how to read its payloads.
type Subscription struct {
	Topic string       `yaml:"topic"`
	QoS   int          `yaml:"qos"`
	Parse parse.Config `yaml:"parse"`
}

// ackTimeoutFloor keeps a mistyped ack_timeout from making every publish
// time out.
const ackTimeoutFloor = 100 * time.Millisecond

// Accepted values, for validation messages.
var (
	Versions = []string{"5", "3.1.1"}
	Formats  = []string{"avro", "json-lines", "json-array", "json"}
	schemes  = map[string]bool{"tcp": false, "mqtt": false, "tls": true, "ssl": true, "mqtts": true}
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	c.presetDefaults()
	if c.Version == "" {
		c.Version = "5"
	}
	if c.Topic == "" {
		c.Topic = "ferry/{site}/{source}"
	}
	if c.Format == "" {
		c.Format = "avro"
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = conf.Duration(30e9)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = conf.Duration(10e9)
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = conf.Duration(10e9)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = conf.Duration(10 * time.Second)
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = conf.Duration(20 * time.Millisecond)
	}
	for i := range c.Subscribe {
		c.Subscribe[i].Parse.SetDefaults()
	}
	if k := c.Commands; k != nil {
		if k.Results == "" {
			k.Results = strings.TrimSuffix(k.Topic, "/#") + "-result"
		}
		if k.QoS == 0 {
			k.QoS = 1
		}
		if k.Timeout == 0 {
			k.Timeout = conf.Duration(5 * time.Second)
		}
		if k.MaxTTL == 0 {
			k.MaxTTL = conf.Duration(time.Minute)
		}
		if k.Remember == 0 {
			k.Remember = 256
		}
	}
}

// Validate checks the config, including that TLS files exist and parse: a
// missing certificate is a config error, not a link that never comes up.
func (c *Config) Validate() error {
	var p conf.Problems
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		p.Add("url", "missing url; expected tcp://HOST:PORT or tls://HOST:PORT")
	case err != nil || u.Host == "" || u.Port() == "":
		p.Add("url", "%q is not a broker URL; expected tcp://HOST:PORT or tls://HOST:PORT", c.URL)
	default:
		if _, ok := schemes[u.Scheme]; !ok {
			p.Add("url", "scheme %q is not one of tcp, mqtt, tls, ssl, mqtts", u.Scheme)
		}
	}
	if !slices.Contains(Versions, c.Version) {
		p.Add("version", "%q is not one of %s", c.Version, strings.Join(Versions, ", "))
	}
	t, err := topics.Parse(c.Topic)
	if err != nil {
		p.Add("topic", "%v", err)
	}
	switch {
	case !slices.Contains(Formats, c.Format):
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	case c.Format == "json" && err == nil && !t.PerTag():
		// Until issue 14 "json" meant JSON lines, several records per
		// message. It now means one record per message, which only makes
		// sense with a topic per tag; an old config never has one by
		// default, so it is stopped here instead of changing silently.
		p.Add("format", "json publishes one object per message, a message per record, and needs a topic per tag ({tag} in topic %q); "+
			"before, format json meant JSON lines: write json-lines to keep that, or json-array for one array per message (Node-RED's JSON node parses that)", c.Topic)
	}
	_, isJSON := bus.ParseJSONShape(c.Format)
	c.JSONOutput.Check(isJSON, c.Format, p.Add)
	if c.AckTimeout.D() < ackTimeoutFloor {
		p.Add("ack_timeout", "%v is too short for any broker to answer; use at least %v", c.AckTimeout.D(), ackTimeoutFloor)
	}
	if c.KeepAlive.D() > 0 && c.KeepAlive.D().Seconds() > 65535 {
		p.Add("keep_alive", "at most 18h12m15s (65535 s)")
	}
	for i, sub := range c.Subscribe {
		path := fmt.Sprintf("subscribe[%d]", i)
		if err := topics.ValidFilter(sub.Topic); err != nil {
			p.Add(path+".topic", "%v", err)
		}
		if sub.QoS < 0 || sub.QoS > 2 {
			p.Add(path+".qos", "%d is not 0, 1 or 2", sub.QoS)
		}
		p.Nest(path+".parse", sub.Parse.Validate())
	}
	if c.BatchSize < 1 {
		p.Add("batch_size", "must be at least 1")
	}
	if c.secure() || c.TLS != (tlsconf.Config{}) {
		p.Nest("tls", c.TLS.Validate())
	}
	if s := compress.Check(c.Compress); s != "" {
		p.Add("compress", "%s", s)
	}
	if c.MaxPayload < 0 {
		p.Add("max_payload", "must not be negative")
	}
	if k := c.Commands; k != nil {
		switch err := topics.ValidFilter(k.Topic); {
		case k.Topic == "":
			p.Add("commands.topic", "missing; e.g. ferry/{site}/cmd/# (commands on <prefix>/<device>/<tag>)")
		case err != nil:
			p.Add("commands.topic", "%v", err)
		case !k.fromPayload && !strings.HasSuffix(k.Topic, "/#"):
			p.Add("commands.topic", "%q must end in /#: commands arrive on <prefix>/<device>/<tag>", k.Topic)
		}
		if strings.ContainsAny(k.Results, "+#") || k.Results == "" {
			p.Add("commands.results", "%q is not a topic prefix", k.Results)
		}
		if k.QoS < 0 || k.QoS > 2 {
			p.Add("commands.qos", "%d is not 0, 1 or 2", k.QoS)
		}
		if k.Timeout <= 0 {
			p.Add("commands.timeout", "must be positive")
		}
		if k.MaxTTL <= 0 {
			p.Add("commands.max_ttl", "must be positive")
		}
	}
	c.validatePreset(p.Add)
	return p.Err()
}

// secure reports whether the URL asks for TLS.
func (c *Config) secure() bool {
	u, err := url.Parse(c.URL)
	return err == nil && schemes[u.Scheme]
}

// tlsConfig builds the client TLS settings, or nil for a plain connection.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.secure() {
		return nil, nil
	}
	u, _ := url.Parse(c.URL)
	return c.TLS.Build(u.Hostname())
}
