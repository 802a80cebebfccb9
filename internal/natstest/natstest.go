// Package natstest runs a real nats-server with JetStream inside a test, on
// a loopback port, and can restart it in place (same port, same store) for
// tests of what ferry does while its bus is away.
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferry-gateway/ferry/bus/natsbus"
)

// Server is one embedded nats-server.
type Server struct {
	t    testing.TB
	cfg  natsbus.EmbeddedConfig
	srv  *server.Server
	port int
}

// Start starts a server on 127.0.0.1 with a random port and a store under
// t.TempDir(); it is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, cfg: natsbus.EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Name: "test"}}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := natsbus.StartEmbedded(&s.cfg, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = srv
	if s.port == 0 {
		_, p, _ := net.SplitHostPort(srv.Addr().String())
		s.port, _ = strconv.Atoi(p)
		s.cfg.Listen = "127.0.0.1:" + p
	}
}

// URL is the client URL, stable across restarts.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop shuts the server down; a stopped server can be started again.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts a stopped server again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
