package kafka

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/tlsconf"
)

// Config is the Kafka sink's section of ferry.yaml.
type Config struct {
	Brokers  []string `yaml:"brokers"`
	Topic    string   `yaml:"topic"`
	ClientID string   `yaml:"client_id"`
	Key      string   `yaml:"key"`
	Format   string   `yaml:"format"`
	// JSONOutput: fields and time_format of the JSON formats.
	bus.JSONOutput `yaml:",inline"`
	Compression    string          `yaml:"compression"`
	TLS            *tlsconf.Config `yaml:"tls"`
	SASL           *SASL           `yaml:"sasl"`
	AckTimeout     conf.Duration   `yaml:"ack_timeout"`
	DialTimeout    conf.Duration   `yaml:"dial_timeout"`
	// Ping is how often the link is checked while nothing is sent, and
	// how soon a lost one is noticed.
	Ping          conf.Duration `yaml:"ping"`
	MaxBatchBytes conf.Size     `yaml:"max_batch_bytes"`
}

// SASL is the broker login.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Accepted values, for validation messages.
var (
	Formats      = []string{"avro", "json", "json-lines", "json-array"}
	Keys         = []string{"device", "source"}
	Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}
	Mechanisms   = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Topic == "" {
		c.Topic = "ferry.{site}"
	}
	if c.Key == "" {
		c.Key = "device"
	}
	if c.Format == "" {
		c.Format = "avro"
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = conf.Duration(30 * time.Second)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = conf.Duration(10 * time.Second)
	}
	if c.Ping == 0 {
		c.Ping = conf.Duration(5 * time.Second)
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20 // Kafka's default message.max.bytes
	}
}

// Validate checks the config; TLS files must exist and parse.
func (c *Config) Validate() error {
	var p conf.Problems
	if len(c.Brokers) == 0 {
		p.Add("brokers", "missing; e.g. [kafka-1.plant:9092]")
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			p.Add(fmt.Sprintf("brokers[%d]", i), "%q is not HOST:PORT", b)
		}
	}
	topic := strings.NewReplacer("{site}", "x", "{module}", "x").Replace(c.Topic)
	if topic == "" || strings.IndexFunc(topic, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		p.Add("topic", "%q is not a Kafka topic name (letters, digits, '.', '_', '-'; {site} and {module} filled in)", c.Topic)
	}
	if !slices.Contains(Keys, c.Key) {
		p.Add("key", "%q is not one of %s", c.Key, strings.Join(Keys, ", "))
	}
	if !slices.Contains(Formats, c.Format) {
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	}
	_, isJSON := bus.ParseJSONShape(c.Format)
	c.JSONOutput.Check(isJSON, c.Format, p.Add)
	if !slices.Contains(Compressions, c.Compression) {
		p.Add("compression", "%q is not one of %s", c.Compression, strings.Join(Compressions, ", "))
	}
	if c.TLS != nil {
		p.Nest("tls", c.TLS.Validate())
	}
	if s := c.SASL; s != nil {
		if !slices.Contains(Mechanisms, s.Mechanism) {
			p.Add("sasl.mechanism", "%q is not one of %s", s.Mechanism, strings.Join(Mechanisms, ", "))
		}
		if s.Username == "" {
			p.Add("sasl.username", "missing")
		}
	}
	if c.AckTimeout.D() < time.Second {
		p.Add("ack_timeout", "%v is too short for a produce round trip; use at least 1s", c.AckTimeout.D())
	}
	if c.Ping.D() < 100*time.Millisecond {
		p.Add("ping", "at least 100ms")
	}
	if c.MaxBatchBytes < 1<<10 {
		p.Add("max_batch_bytes", "at least 1KiB")
	}
	return p.Err()
}

// options are the franz-go client settings: an idempotent producer with
// acks from every in-sync replica, so a retry after a lost answer is not
// written twice and nothing is reordered within a partition.
func (c *Config) options(clientID, topic string) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(clientID),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DialTimeout(c.DialTimeout.D()),
		kgo.ProducerBatchMaxBytes(int32(c.MaxBatchBytes)),
		// A record not acknowledged in time fails (with every later one of
		// its partition, which keeps the order): the runtime then writes
		// the batch again. A record already sent is retried by franz-go
		// until the broker answers, as idempotence requires.
		kgo.RecordDeliveryTimeout(c.AckTimeout.D()),
		// Batches are whole when handed over; lingering would only delay.
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1 << 16),
	}
	switch c.Compression {
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	}
	if c.TLS != nil {
		host, _, _ := net.SplitHostPort(c.Brokers[0])
		tc, err := c.TLS.Build(host)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if c.TLS.ServerName == "" {
			// Each broker is verified under its own name.
			tc = tc.Clone()
			tc.ServerName = ""
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := c.SASL; s != nil {
		var m sasl.Mechanism
		switch s.Mechanism {
		case "PLAIN":
			m = plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}
