package opcua

import (
	"crypto/rsa"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/internal/uacert"
)

// Certificate is an application instance certificate (DER) and its key.
type Certificate struct {
	DER []byte
	Key *rsa.PrivateKey
}

// NewCertificate makes a self-signed application instance certificate for
// appURI, valid five years for the given host names and addresses (see
// internal/uacert).
func NewCertificate(appURI, commonName string, hosts ...string) (Certificate, error) {
	der, key, err := uacert.New(appURI, commonName, 5*365*24*time.Hour, hosts...)
	if err != nil {
		return Certificate{}, err
	}
	return Certificate{DER: der, Key: key}, nil
}

// ApplicationURI is the simulator's application URI, also in its
// certificate.
const ApplicationURI = "urn:ferry:sim:opcua"

var (
	defaultCertOnce sync.Once
	defaultCert     Certificate
	defaultCertErr  error
)

// sharedCertificate is generated once per process: RSA key generation
// costs tens of milliseconds (more under -race), and most tests do not care
// which certificate a simulator has.
func sharedCertificate() (Certificate, error) {
	defaultCertOnce.Do(func() {
		defaultCert, defaultCertErr = NewCertificate(ApplicationURI, "ferry OPC UA simulator", "localhost", "127.0.0.1", "::1")
	})
	return defaultCert, defaultCertErr
}
