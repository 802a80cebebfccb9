//go:build unix

package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/internal/testpki"
)

// TestUplinkSocketsHaveNoDelay reads TCP_NODELAY off the socket of every
// connection the uplink opens, both protocol versions, plain and TLS: with
// Nagle on, a pipelined uplink's PUBLISHes wait for delayed ACKs (issue 15).
func TestUplinkSocketsHaveNoDelay(t *testing.T) {
	ca := testpki.New(t)
	caPEM, serverCert := ca.WriteCA(t.TempDir()), ca.Issue("cloud.test", x509.ExtKeyUsageServerAuth)
	plain := startCloud(t, nil)
	secure := startCloud(t, &tls.Config{Certificates: []tls.Certificate{serverCert}})
	conns := make(chan net.Conn, 16)
	f := func(nc net.Conn) { conns <- nc }
	dialed.Store(&f)
	t.Cleanup(func() { dialed.Store(nil) })
	for _, v := range Versions {
		for _, scheme := range []string{"tcp", "tls"} {
			t.Run("v"+v+"/"+scheme, func(t *testing.T) {
				url := "tcp://" + plain.MQTTAddr()
				if scheme == "tls" {
					url = "tls://" + secure.MQTTAddr()
				}
				m := newSink(t, url, v, func(c *Config) {
					if scheme == "tls" {
						c.TLS.CAFile, c.TLS.ServerName = caPEM, "cloud.test"
					}
				})
				// Connections left from the subtest before (a reconnect)
				// are not this one's.
				for len(conns) > 0 {
					<-conns
				}
				startSink(t, m)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if err := m.Write(ctx, batch(0, 2)); err != nil {
					t.Fatal(err)
				}
				var got []net.Conn
				for len(conns) > 0 {
					got = append(got, <-conns)
				}
				if len(got) == 0 {
					t.Fatal("the uplink connected without dialLink")
				}
				for _, nc := range got {
					checkNoDelay(t, nc, scheme)
				}
			})
		}
	}
}

// checkNoDelay fails t unless nc is of the scheme's kind and has
// TCP_NODELAY set on its socket.
func checkNoDelay(t *testing.T, nc net.Conn, scheme string) {
	t.Helper()
	if tc, ok := nc.(*tls.Conn); ok != (scheme == "tls") {
		t.Fatalf("%T over %s", nc, scheme)
	} else if ok {
		nc = tc.NetConn()
	}
	sc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var serr error
	if err := sc.Control(func(fd uintptr) {
		on, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if on == 0 {
		t.Fatal("TCP_NODELAY is off on the uplink's socket")
	}
}

// TestPacketWriterLocksTLS: paho locks around each packet only on a
// connection that is a sync.Locker. Over TLS (a record per buffer) its
// PINGREQ could otherwise land inside a PUBLISH; a TCP connection keeps its
// one-writev write.
func TestPacketWriterLocksTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := packetWriter(nc); got != nc {
		t.Errorf("a TCP connection was wrapped (%T): its writes would lose writev", got)
	}
	if _, ok := packetWriter(tls.Client(nc, &tls.Config{})).(sync.Locker); !ok {
		t.Error("a TLS connection is not a sync.Locker: paho's writers can interleave inside a packet")
	}
}
