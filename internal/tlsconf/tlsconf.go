// Package tlsconf is the TLS client settings every connector that dials out
// shares: the files of a CA, a client certificate and key, and the server
// name, checked at validation so that a missing file is a config error and
// not a link that never comes up.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config names the files of a TLS client.
type Config struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Validate checks that the files exist and parse. Paths in the problems are
// relative to the tls: section.
func (c *Config) Validate() error {
	var p conf.Problems
	for _, f := range []struct{ field, path string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			p.Add(f.field, "%v", err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		p.Add("", "cert_file and key_file go together")
	}
	if len(p) == 0 {
		if _, err := c.Build(""); err != nil {
			p.Add("", "%v", err)
		}
	}
	return p.Err()
}

// Build returns the client TLS settings; host is the server name to verify
// when server_name is not set.
func (c *Config) Build(host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
