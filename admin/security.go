package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/router"
)

// Protect puts the admin settings in front of h:
//
//   - with auth configured, every route but /healthz and /readyz needs a
//     bearer token (Authorization: Bearer TOKEN) or HTTP basic credentials
//     of a user (a browser asks for them; the token also works as a basic
//     password, under any user name);
//   - a POST must come from the page itself: a browser's Origin, when sent,
//     must be this host, so another site cannot make a logged-in browser
//     write to a device.
func Protect(cfg router.AdminConfig, h http.Handler) http.Handler {
	g := &guard{cfg: cfg, next: h, ok: map[[32]byte]time.Time{}}
	return g
}

type guard struct {
	cfg  router.AdminConfig
	next http.Handler
	// ok remembers credentials bcrypt accepted, for a while: the page
	// polls a few times a second, and bcrypt is slow on purpose.
	mu sync.Mutex
	ok map[[32]byte]time.Time
}

const (
	rememberLogin = 5 * time.Minute
	maxRemembered = 64
)

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		g.next.ServeHTTP(w, r)
		return
	}
	if g.cfg.AuthOn() && !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="ferry admin", charset="UTF-8"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="ferry admin"`)
		http.Error(w, "authentication required: a bearer token or a user's name and password (admin.auth)", http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		http.Error(w, "cross-site request refused: POST only from the admin page itself", http.StatusForbidden)
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) authorized(r *http.Request) bool {
	tok := g.cfg.Auth.Token
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return tok != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(bearer)), []byte(tok)) == 1
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	if tok != "" && subtle.ConstantTimeCompare([]byte(pass), []byte(tok)) == 1 {
		return true
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	g.mu.Lock()
	at, seen := g.ok[key]
	g.mu.Unlock()
	if seen && now.Sub(at) < rememberLogin {
		return true
	}
	for _, u := range g.cfg.Auth.Users {
		if subtle.ConstantTimeCompare([]byte(u.Name), []byte(user)) == 1 &&
			bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pass)) == nil {
			g.mu.Lock()
			if len(g.ok) >= maxRemembered {
				clear(g.ok)
			}
			g.ok[key] = now
			g.mu.Unlock()
			return true
		}
	}
	return false
}

// sameOrigin accepts a request without an Origin (curl, `ferry reload`)
// and one whose Origin is the host it was sent to.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// Serve listens on cfg.Addr and serves h behind Protect, over HTTPS when
// cfg names a certificate. The bound address is logged.
func Serve(cfg router.AdminConfig, h http.Handler, logger *slog.Logger) (*Server, error) {
	h = Protect(cfg, h)
	if !cfg.TLSOn() {
		s, err := Listen(cfg.Addr, h, logger)
		if err == nil && !cfg.Commissioning() {
			logger.Warn("admin endpoint off loopback without authentication: the page only reads (no writes, no discovery)", "addr", cfg.Addr)
		}
		return s, err
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("admin: tls: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", cfg.Addr, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// A failed handshake (a scanner, plain HTTP to this port) is not
	// worth more than a debug line.
	s := &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}}
	go func() {
		if err := s.srv.Serve(tls.NewListener(ln, tc)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin server stopped", "error", err)
		}
	}()
	logger.Info("admin listening", "addr", "https://"+ln.Addr().String(), "auth", cfg.AuthOn())
	return s, nil
}
