package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	paho311 "github.com/eclipse/paho.mqtt.golang"
)

// dialed, when set (by tests), sees every connection the uplink opens,
// before the MQTT CONNECT.
var dialed atomic.Pointer[func(net.Conn)]

// dialLink opens the uplink's connection for both protocol versions: TCP
// with TCP_NODELAY, then TLS when tc is set. Go sets TCP_NODELAY on every
// TCP connection by default; it is set here again on purpose, because a
// pipelined uplink writes a PUBLISH per message and Nagle would hold each
// one behind the broker's delayed ACK (40 ms on Linux) whenever the window
// is not full, and a custom dialer or a library default could lose it
// without a test failing.
func dialLink(ctx context.Context, c *Config, tc *tls.Config) (net.Conn, error) {
	addr := hostPort(c.URL)
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		if err := tcp.SetNoDelay(true); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: set TCP_NODELAY: %w", addr, err)
		}
	}
	if tc != nil {
		tlc := tls.Client(nc, tlsFor(tc, addr))
		if err := tlc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tlc
	}
	if f := dialed.Load(); f != nil {
		(*f)(nc)
	}
	return nc, nil
}

// tlsFor is tc with the server name set from addr when tc has none, as
// tls.Dial does.
func tlsFor(tc *tls.Config, addr string) *tls.Config {
	if tc.ServerName != "" {
		return tc
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	tc = tc.Clone()
	tc.ServerName = host
	return tc
}

// open311 is paho's connection opener for MQTT 3.1.1: dialLink, bounded by
// the connect timeout and by ctx.
func open311(ctx context.Context, c *Config, tc *tls.Config) paho311.OpenConnectionFunc {
	return func(*url.URL, paho311.ClientOptions) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(c.ConnectTimeout))
		defer cancel()
		return dialLink(ctx, c, tc)
	}
}
