package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"time"
)

// Certificate is an application instance certificate (DER) and its key.
type Certificate struct {
	DER []byte
	Key *rsa.PrivateKey
}

// NewCertificate makes a self-signed RSA-2048 application instance
// certificate for appURI, valid for the given host names and addresses, as
// OPC UA Part 6 wants it: the application URI in the subject alternative
// name, key usages for signing and key encipherment, both TLS usages.
func NewCertificate(appURI, commonName string, hosts ...string) (Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Certificate{}, err
	}
	u, err := url.Parse(appURI)
	if err != nil {
		return Certificate{}, fmt.Errorf("application uri %q: %w", appURI, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"ferry"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
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
