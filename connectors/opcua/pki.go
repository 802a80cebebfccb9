package opcua

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // OPC UA thumbprints are SHA-1 by definition (Part 6, 6.2.3)
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/internal/uacert"
)

// ErrUntrusted is wrapped by the error for a server certificate that is
// not in the trust list.
var ErrUntrusted = errors.New("server certificate not trusted")

// identity is the application instance certificate and key.
type identity struct {
	der []byte
	key *rsa.PrivateKey
	uri string
}

// loadOrCreateIdentity loads the configured certificate and key, or the
// ones generated into dir on an earlier run, or generates them.
func loadOrCreateIdentity(certPath, keyPath, dir, appURI, commonName string) (identity, bool, error) {
	generated := certPath == ""
	if generated {
		certPath = filepath.Join(dir, "own", "cert.der")
		keyPath = filepath.Join(dir, "own", "key.pem")
	}
	der, errC := loadCert(certPath)
	key, errK := loadKey(keyPath)
	if errC == nil && errK == nil {
		return identity{der: der, key: key, uri: certURI(der, appURI)}, false, nil
	}
	if !generated || !errors.Is(errC, os.ErrNotExist) || !errors.Is(errK, os.ErrNotExist) {
		return identity{}, false, fmt.Errorf("application certificate: %w", errors.Join(errC, errK))
	}
	host, _ := os.Hostname()
	der, key, err := newCertificate(appURI, commonName, host, "localhost")
	if err != nil {
		return identity{}, false, fmt.Errorf("generate application certificate: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return identity{}, false, err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return identity{}, false, err
	}
	if err := writeFile(certPath, der, 0o644); err != nil {
		return identity{}, false, err
	}
	return identity{der: der, key: key, uri: appURI}, true, nil
}

// certURI is the application URI in a certificate, or def.
func certURI(der []byte, def string) string {
	if c, err := x509.ParseCertificate(der); err == nil && len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return def
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newCertificate makes the client's application instance certificate,
// valid for ten years.
func newCertificate(appURI, commonName string, hosts ...string) ([]byte, *rsa.PrivateKey, error) {
	return uacert.New(appURI, commonName, 10*365*24*time.Hour, hosts...)
}

// loadCert reads a DER or PEM certificate.
func loadCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// loadKey reads a PEM RSA key (PKCS#1 or PKCS#8).
func loadKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not a PEM file", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: OPC UA needs an RSA key, got %T", path, k)
	}
	return rk, nil
}

// Thumbprint is the SHA-1 of a certificate's DER, as OPC UA names it.
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der) //nolint:gosec // see import
	return hex.EncodeToString(sum[:])
}

// trustStore is a directory of trusted certificates and one of rejected
// ones beside it.
type trustStore struct {
	dir      string
	rejected string
	tofu     bool
}

// check decides whether a server certificate is trusted: it is in the
// trust directory, or signed by a CA that is; or, with trust on first use,
// no trusted certificate has its application URI yet (it is then saved).
// An untrusted certificate is saved into rejected/ so an operator can move
// it over.
func (t trustStore) check(der []byte) (tofu bool, err error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return false, fmt.Errorf("%w: server sent an unparsable certificate: %v", ErrUntrusted, err)
	}
	uri := certURI(der, "")
	trusted, err := t.load()
	if err != nil {
		return false, err
	}
	sameURI := false
	roots := x509.NewCertPool()
	for _, c := range trusted {
		if bytes.Equal(c.Raw, der) {
			return false, nil
		}
		if c.IsCA {
			roots.AddCert(c)
		}
		if uri != "" && len(c.URIs) > 0 && c.URIs[0].String() == uri {
			sameURI = true
		}
	}
	if len(roots.Subjects()) > 0 { //nolint:staticcheck // only asking whether the pool is empty
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return false, nil
		}
	}
	name := certName(cert)
	if t.tofu && !sameURI {
		if err := os.MkdirAll(t.dir, 0o700); err != nil {
			return false, err
		}
		if err := writeFile(filepath.Join(t.dir, fileName(cert, der)), der, 0o644); err != nil {
			return false, err
		}
		return true, nil
	}
	saved := filepath.Join(t.rejected, fileName(cert, der))
	if err := os.MkdirAll(t.rejected, 0o700); err == nil {
		_ = writeFile(saved, der, 0o644)
	}
	why := "it is not in the trust list"
	if sameURI {
		why = "a different certificate is trusted for " + uri + " (the server's certificate changed)"
	}
	// The folder is named with a trailing separator and the command that
	// moves the file is given: "copy X into trusted" once led people to
	// create a file named trusted.
	return false, fmt.Errorf("%w: %s (thumbprint %s): %s; to trust it, check the thumbprint and run `ferry trust accept %s`, or move %q into the folder %s",
		ErrUntrusted, name, Thumbprint(der), why, Thumbprint(der)[:16], saved, t.dir+string(filepath.Separator))
}

// ensure creates the trusted and rejected folders, so the documented
// `mv rejected/… trusted/` works before anything was ever trusted. A file
// where a folder belongs (left by an earlier `cp x trusted`) is reported.
func (t trustStore) ensure() error {
	for _, d := range []string{t.dir, t.rejected} {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err == nil && !fi.IsDir() {
			return fmt.Errorf("trust list: %s is a file, not a folder; move it aside (it may be a certificate copied to that name) and start again", d)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("trust list: %w", err)
		}
	}
	return nil
}

// CertFile is one certificate of a trust store folder.
type CertFile struct {
	Path       string
	Thumbprint string
	Subject    string // the common name
	URI        string // the application URI, when it has one
	NotAfter   time.Time
}

// ListCertificates returns the certificates in dir (DER or PEM files),
// sorted by file name; files that are not certificates are skipped, a
// missing folder is empty.
func ListCertificates(dir string) ([]CertFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CertFile
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		der, err := loadCert(p)
		if err != nil {
			continue
		}
		c, _ := x509.ParseCertificate(der)
		f := CertFile{Path: p, Thumbprint: Thumbprint(der), Subject: c.Subject.CommonName, NotAfter: c.NotAfter}
		if len(c.URIs) > 0 {
			f.URI = c.URIs[0].String()
		}
		out = append(out, f)
	}
	return out, nil
}

// ErrNoCertificate is wrapped when no rejected certificate matches a
// thumbprint, or more than one does.
var ErrNoCertificate = errors.New("no such certificate")

// TrustRejected moves the rejected certificate whose thumbprint starts
// with prefix (at least 8 hex digits, so a typo cannot trust the wrong
// one) from pki/rejected into pki/trusted, creating the folder.
func TrustRejected(pki, prefix string) (CertFile, error) {
	prefix = strings.ToLower(strings.ReplaceAll(prefix, ":", ""))
	if len(prefix) < 8 {
		return CertFile{}, fmt.Errorf("%w: give at least the first 8 hex digits of the thumbprint, got %q", ErrNoCertificate, prefix)
	}
	t := trustStore{dir: filepath.Join(pki, "trusted"), rejected: filepath.Join(pki, "rejected")}
	certs, err := ListCertificates(t.rejected)
	if err != nil {
		return CertFile{}, err
	}
	var match []CertFile
	for _, c := range certs {
		if strings.HasPrefix(c.Thumbprint, prefix) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return CertFile{}, fmt.Errorf("%w: no certificate in %s has a thumbprint starting %s", ErrNoCertificate, t.rejected, prefix)
	case 1:
	default:
		return CertFile{}, fmt.Errorf("%w: %d certificates in %s have a thumbprint starting %s; give more digits", ErrNoCertificate, len(match), t.rejected, prefix)
	}
	if err := t.ensure(); err != nil {
		return CertFile{}, err
	}
	c := match[0]
	dst := filepath.Join(t.dir, filepath.Base(c.Path))
	if err := os.Rename(c.Path, dst); err != nil {
		return CertFile{}, fmt.Errorf("trust %s: %w", c.Thumbprint, err)
	}
	c.Path = dst
	return c, nil
}

func (t trustStore) load() ([]*x509.Certificate, error) {
	entries, err := os.ReadDir(t.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust list: %w", err)
	}
	var out []*x509.Certificate
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		der, err := loadCert(filepath.Join(t.dir, e.Name()))
		if err != nil {
			continue // not a certificate
		}
		c, _ := x509.ParseCertificate(der)
		out = append(out, c)
	}
	return out, nil
}

func certName(c *x509.Certificate) string {
	s := fmt.Sprintf("%q", c.Subject.CommonName)
	if len(c.URIs) > 0 {
		s += " (" + c.URIs[0].String() + ")"
	}
	return s
}

// fileName is <common name> [<thumbprint>].der, the usual PKI layout.
func fileName(c *x509.Certificate, der []byte) string {
	cn := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < ' ' {
			return '_'
		}
		return r
	}, c.Subject.CommonName)
	if cn == "" {
		cn = "server"
	}
	return cn + " [" + Thumbprint(der) + "].der"
}
