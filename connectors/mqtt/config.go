package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the MQTT sink's section of ferry.yaml.
type Config struct {
	URL            string        `yaml:"url"`
	Version        string        `yaml:"version"`
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	Password       string        `yaml:"password"`
	TLS            TLSConfig     `yaml:"tls"`
	Topic          string        `yaml:"topic"`
	Format         string        `yaml:"format"`
	KeepAlive      conf.Duration `yaml:"keep_alive"`
	ConnectTimeout conf.Duration `yaml:"connect_timeout"`
	AckTimeout     conf.Duration `yaml:"ack_timeout"`
}

// TLSConfig names the files of a TLS connection.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// ackTimeoutFloor keeps a mistyped ack_timeout from making every publish
// time out.
const ackTimeoutFloor = 100 * time.Millisecond

// Accepted values, for validation messages.
var (
	Versions = []string{"5", "3.1.1"}
	Formats  = []string{"avro", "json"}
	schemes  = map[string]bool{"tcp": false, "mqtt": false, "tls": true, "ssl": true, "mqtts": true}
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
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
	if !contains(Versions, c.Version) {
		p.Add("version", "%q is not one of %s", c.Version, strings.Join(Versions, ", "))
	}
	if !contains(Formats, c.Format) {
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	}
	if _, err := parseTopic(c.Topic); err != nil {
		p.Add("topic", "%v", err)
	}
	if c.AckTimeout.D() < ackTimeoutFloor {
		p.Add("ack_timeout", "%v is too short for any broker to answer; use at least %v", c.AckTimeout.D(), ackTimeoutFloor)
	}
	if c.KeepAlive.D() > 0 && c.KeepAlive.D().Seconds() > 65535 {
		p.Add("keep_alive", "at most 18h12m15s (65535 s)")
	}
	for field, file := range map[string]string{"tls.ca_file": c.TLS.CAFile, "tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			p.Add(field, "%v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.Add("tls", "cert_file and key_file go together")
	}
	if len(p) == 0 {
		if _, err := c.tlsConfig(); err != nil {
			p.Add("tls", "%v", err)
		}
	}
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
	tc := &tls.Config{ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		if u, err := url.Parse(c.URL); err == nil {
			tc.ServerName = u.Hostname()
		}
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", c.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
