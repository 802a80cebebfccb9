package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/router/lvc"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

func startConfig(t *testing.T, text string) *router.Pipeline {
	t.Helper()
	cfg, err := router.Load("admin.yaml", []byte(text), conf.Resolver{})
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	cfg.DataDir = t.TempDir()
	p, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopPipeline(t, p) })
	return p
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
	return v
}

func post(t *testing.T, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTagsFilterAndPage(t *testing.T) {
	p := pipeline(t)
	a := New(p)
	defer a.Close()
	srv := httptest.NewServer(a)
	defer srv.Close()
	// Only routed sources reach the engine, and with it the cache: gen's
	// two tags, not other's.
	waitfor.Until(t, 10*time.Second, func() bool { return p.Tags().Len() >= 2 }, waitfor.Say("two tags in the cache"))
	page := getJSON[lvc.Page](t, srv.URL+"/api/tags?source=gen")
	if page.Matched != 2 || page.Tags[0].Tag != "a" || page.Tags[1].Tag != "b" {
		t.Fatalf("source=gen: %+v", page)
	}
	if page := getJSON[lvc.Page](t, srv.URL+"/api/tags?q=b&limit=1"); page.Matched != 1 || page.Tags[0].Tag != "b" {
		t.Errorf("q=b: %+v", page)
	}
	if page := getJSON[lvc.Page](t, srv.URL+"/api/tags?q=device1/*"); page.Matched != 2 {
		t.Errorf("q=device1/*: %+v", page)
	}
	if page := getJSON[lvc.Page](t, srv.URL+"/api/tags?limit=1&offset=1"); len(page.Tags) != 1 || page.Matched != 2 || page.Tags[0].Tag != "b" {
		t.Errorf("page 2 of 1: %+v", page)
	}
	for _, bad := range []string{"stale=maybe", "limit=0", "offset=-1", "q=[a"} {
		if resp, _ := get(t, srv.URL+"/api/tags?"+bad); resp.StatusCode != 400 {
			t.Errorf("?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
	// The counter moves: two reads of the detail see two values.
	first := getJSON[tagDetail](t, srv.URL+"/api/tag?source=gen&device=device1&tag=a")
	waitfor.Until(t, 10*time.Second, func() bool {
		d := getJSON[tagDetail](t, srv.URL+"/api/tag?source=gen&device=device1&tag=a")
		return d.Seq != first.Seq && len(d.History) > 1
	}, waitfor.Say("tag a to update with a history"))
	if first.Writable != "no" {
		t.Errorf("a generator's tag is writable %q", first.Writable)
	}
	devs := getJSON[Devices](t, srv.URL+"/api/devices")
	if !devs.Commissioning || len(devs.Devices) != 1 || devs.Devices[0].Type != "generator" || devs.Devices[0].Phase != "up" {
		t.Errorf("devices: %+v", devs)
	}
}

// TestWriteFromThePage writes a Modbus setpoint through the same path as an
// MQTT command: ok on a writable tag (the simulator's register changes),
// refused on a read-only one and on an unknown one, each left as an event.
func TestWriteFromThePage(t *testing.T) {
	cfg := simmodbus.DemoConfig()
	cfg.Addr = "127.0.0.1:0"
	sim, err := simmodbus.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	p := startConfig(t, fmt.Sprintf(`
connectors:
  mb:
    type: modbus
    devices:
      - name: press
        endpoint: tcp://%s
        poll_interval: 100ms
        tags:
          - {name: setpoint, area: holding, address: 5, type: uint16, writable: true}
          - {name: status, area: holding, address: 4, type: uint16}
  out: {type: file, path: out.jsonl}
routes:
  - {from: mb, to: out}
`, sim.Addr()))
	a := New(p)
	defer a.Close()
	srv := httptest.NewServer(a)
	defer srv.Close()
	waitfor.Until(t, 10*time.Second, func() bool { return p.Tags().Len() == 2 }, waitfor.Say("both tags cached"))

	for _, c := range []struct{ body, status string }{
		{`{"source":"mb","device":"press","tag":"setpoint","value":321}`, "ok"},
		{`{"source":"mb","device":"press","tag":"status","value":1}`, "refused"},
		{`{"source":"mb","device":"press","tag":"nope","value":1}`, "refused"},
		{`{"source":"mb","device":"press","tag":"setpoint","value":[1]}`, "refused"},
	} {
		code, body := post(t, srv.URL+"/api/write", c.body, nil)
		var res WriteResult
		if code != 200 || json.Unmarshal([]byte(body), &res) != nil || res.Status != c.status {
			t.Errorf("%s: %d %s, want %s", c.body, code, body, c.status)
		}
	}
	if got := sim.Unit(1).HoldingRegisters().Uint16(5, simmodbus.ABCD); got != 321 {
		t.Errorf("register 5 holds %d after the write, want 321", got)
	}
	var writes []connectors.Event
	for _, e := range p.Events(0) {
		if e.Kind == EventWrite {
			writes = append(writes, e)
		}
	}
	if len(writes) != 4 || !strings.Contains(writes[0].Message, "press/setpoint = 321: ok") || writes[1].Error == "" {
		t.Errorf("write events: %+v", writes)
	}
	// The Modbus connector knows: writable: true, or not.
	for tag, want := range map[string]string{"setpoint": "yes", "status": "no"} {
		if d := getJSON[tagDetail](t, srv.URL+"/api/tag?source=mb&device=press&tag="+tag); d.Writable != want {
			t.Errorf("%s writable %q, want %q", tag, d.Writable, want)
		}
	}
}

const hashCost = bcrypt.MinCost

func TestAuthTokenUsersAndCrossSite(t *testing.T) {
	p := pipeline(t)
	a := New(p)
	defer a.Close()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), hashCost)
	cfg := router.AdminConfig{Addr: "0.0.0.0:0", Auth: router.AdminAuth{Token: "0123456789abcdef-token", Users: []router.AdminUser{{Name: "ops", PasswordHash: string(hash)}}}}
	srv := httptest.NewServer(Protect(cfg, a))
	defer srv.Close()

	do := func(method, path string, set func(*http.Request)) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(`{}`))
		if set != nil {
			set(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 401 && !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ","), "Basic") {
			t.Errorf("401 without a Basic challenge, so a browser cannot log in")
		}
		return resp.StatusCode
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(u, pw string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, pw) } }
	for _, c := range []struct {
		method, path string
		set          func(*http.Request)
		want         int
	}{
		{"GET", "/api/status", nil, 401},
		{"GET", "/", nil, 401},
		{"GET", "/metrics", nil, 401},
		{"POST", "/api/write", nil, 401},
		{"POST", "/api/discover/snippet", nil, 401},
		{"GET", "/healthz", nil, 200},
		{"GET", "/readyz", nil, 200},
		{"GET", "/api/status", bearer("wrong-token-wrong-token"), 401},
		{"GET", "/api/status", bearer(cfg.Auth.Token), 200},
		{"GET", "/api/status", basic("ops", "s3cret"), 200},
		{"GET", "/api/status", basic("ops", "s3cret"), 200}, // remembered
		{"GET", "/api/status", basic("ops", "wrong"), 401},
		{"GET", "/api/status", basic("anyone", cfg.Auth.Token), 200},
		{"POST", "/api/discover/snippet", bearer(cfg.Auth.Token), 200},
		{"POST", "/api/discover/snippet", func(r *http.Request) {
			bearer(cfg.Auth.Token)(r)
			r.Header.Set("Origin", "https://evil.example")
		}, 403},
		{"POST", "/api/discover/snippet", func(r *http.Request) {
			basic("ops", "s3cret")(r)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, 403},
	} {
		if got := do(c.method, c.path, c.set); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
}

// Off loopback without auth (insecure: true) the page reads but neither
// writes nor reaches out to devices.
func TestInsecureEndpointOnlyReads(t *testing.T) {
	p := startConfig(t, `
admin: {addr: "0.0.0.0:8080", insecure: true}
connectors:
  gen: {type: generator, interval: 50ms, tags: [{name: t}]}
  out: {type: file, path: out.jsonl}
routes:
  - {from: gen, to: out}
`)
	a := New(p)
	defer a.Close()
	srv := httptest.NewServer(a)
	defer srv.Close()
	for _, path := range []string{"/api/write", "/api/discover/modbus", "/api/discover/opcua", "/api/discover/snippet"} {
		if code, body := post(t, srv.URL+path, `{}`, nil); code != 403 || !strings.Contains(body, "admin.auth") {
			t.Errorf("POST %s: %d %s, want 403", path, code, body)
		}
	}
	if d := getJSON[Devices](t, srv.URL+"/api/devices"); d.Commissioning {
		t.Error("devices says commissioning is on")
	}
	if resp, _ := get(t, srv.URL+"/api/tags"); resp.StatusCode != 200 {
		t.Errorf("tags: %d", resp.StatusCode)
	}
}

// TestServeTLS serves over HTTPS from PEM files, with the token required.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	p := pipeline(t)
	a := New(p)
	defer a.Close()
	cfg := router.AdminConfig{Addr: "127.0.0.1:0", Auth: router.AdminAuth{Token: "0123456789abcdef-token"}, TLS: router.AdminTLS{Cert: certFile, Key: keyFile}}
	s, err := Serve(cfg, a, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	for tok, want := range map[string]int{"": 401, cfg.Auth.Token: 200} {
		req, _ := http.NewRequest("GET", "https://"+s.Addr()+"/api/status", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.TLS == nil {
			t.Errorf("token %q: %d (tls %v), want %d", tok, resp.StatusCode, resp.TLS != nil, want)
		}
	}
	// Plain HTTP to the TLS port gets no page.
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS port")
		}
	}
	bad := cfg
	bad.TLS.Key = filepath.Join(dir, "missing.key")
	if _, err := Serve(bad, a, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("a missing key: %v", err)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
