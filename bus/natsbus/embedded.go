package natsbus

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// StartEmbedded starts an in-process nats-server with JetStream, for a box
// that wants durable streams without running a server of its own, or (with
// cluster:) for instances that each bring one node of the cluster.
func StartEmbedded(c *EmbeddedConfig, logger *slog.Logger) (*server.Server, error) {
	host, port, err := conf.HostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats embedded listen %q: %w", c.Listen, err)
	}
	opts := &server.Options{
		ServerName:        c.Name,
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          c.StoreDir,
		JetStreamMaxStore: int64(c.MaxStore),
		NoSigs:            true,
	}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if cl := c.Cluster; cl != nil {
		ch, cp, err := conf.HostPort(cl.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats embedded cluster listen %q: %w", cl.Listen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: cl.Name, Host: ch, Port: cp}
		for _, r := range cl.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("nats embedded route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats embedded server: %w", err)
	}
	if logger != nil {
		s.SetLoggerV2(serverLogger{logger.With("component", "nats-server")}, false, false, false)
	}
	go s.Start()
	// A clustered node waits for its peers before JetStream is up, which can
	// take as long as the slowest box takes to boot; a lone node is ready in
	// milliseconds.
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats embedded server on %s did not come up", c.Listen)
	}
	return s, nil
}

// serverLogger routes nats-server's log lines to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
