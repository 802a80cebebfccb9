package line

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
)

// Shared legacy lines: the unit tests and the conformance harnesses use
// them (kv format, value_type double).
const (
	goodLine    = "temp=21.5"
	garbageLine = "%%% not key value %%%"
)

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, c := range []struct {
		name, in string
		max      int
		want     []string // lines; "!" marks ErrLineTooLong
	}{
		{"lines", "a\nb\n\nc\n", 10, []string{"a", "b", "", "c"}},
		{"unterminated last", "a\nb", 10, []string{"a", "b"}},
		{"exactly max", "0123456789\nz\n", 10, []string{"0123456789", "z"}},
		{"too long then good", "01234567890\nz\n", 10, []string{"!", "z"}},
		{"long across buffers", long + "\nok\n" + long, 50, []string{"!", "ok", "!"}},
		{"crlf kept for the parser", "a\r\n", 10, []string{"a\r"}},
	} {
		for _, r := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte by byte", iotest.OneByteReader}} {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				lr := newLineReader(r.wrap(strings.NewReader(c.in)), c.max)
				var got []string
				for {
					line, tooLong, err := lr.next()
					switch {
					case tooLong:
						got = append(got, "!")
					case len(line) > 0 || err == nil:
						got = append(got, string(line))
					}
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("got %q, want %q", got, c.want)
				}
			})
		}
	}
}

// feedWriter writes good lines to w every few milliseconds until it fails
// or stop closes, and a garbage line whenever garbage is raised.
func feedWriter(w io.Writer, stop <-chan struct{}, garbage *atomic.Int32) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		line := goodLine + "\n"
		if garbage != nil && garbage.Load() > 0 {
			garbage.Add(-1)
			line = garbageLine + "\n" + line
		}
		if _, err := io.WriteString(w, line); err != nil {
			return
		}
	}
}

const streamParse = "parse: {format: kv, value_type: double}\nbatch_interval: 5ms\n"

func TestListenerConformance(t *testing.T) {
	var garbage atomic.Int32
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\n"+streamParse)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			t.Cleanup(func() { close(stop); wg.Wait() })
			wg.Go(func() {
				// A shim that connects once the listener is bound.
				select {
				case <-stop:
					return
				case <-l.bound():
				}
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					return // the suite stopped the connector already
				}
				defer c.Close()
				feedWriter(c, stop, &garbage)
			})
			return l
		},
		FailStart: func(t *testing.T) connectors.Connector {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = busy.Close() })
			return mustDecode(t, "type: line\nlisten: "+busy.Addr().String()+"\n"+streamParse)
		},
		Malformed: func(*testing.T) { garbage.Add(1) },
	})
}

// feedServer is a device that streams lines to whoever connects, and can
// be restarted on the same port.
type feedServer struct {
	t       testing.TB
	addr    string
	garbage atomic.Int32

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startFeed(t testing.TB) *feedServer {
	s := &feedServer{t: t, addr: "127.0.0.1:0"}
	s.up()
	t.Cleanup(s.down)
	return s
}

func (s *feedServer) up() {
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The port was ours a moment ago; another process may hold it
		// briefly, so retry on the same address.
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // retrying a bind: there is no event to wait for
	}
	if err != nil {
		s.t.Fatalf("feed server: %v", err)
	}
	s.mu.Lock()
	s.ln, s.addr, s.conns, s.stop = ln, ln.Addr().String(), map[net.Conn]bool{}, make(chan struct{})
	stop := s.stop
	s.mu.Unlock()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				feedWriter(c, stop, &s.garbage)
			})
		}
	})
}

func (s *feedServer) down() {
	s.mu.Lock()
	if s.ln == nil {
		s.mu.Unlock()
		return
	}
	_ = s.ln.Close()
	s.ln = nil
	close(s.stop)
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func TestClientConformance(t *testing.T) {
	var srv *feedServer
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			srv = startFeed(t)
			return mustDecode(t, "type: line\nconnect: "+srv.addr+"\nmax_backoff: 200ms\n"+streamParse)
		},
		Restart: func(*testing.T) {
			srv.down()
			srv.up()
		},
		Malformed: func(*testing.T) { srv.garbage.Add(1) },
	})
}

// TestClientUpDown checks the state follows the connection.
func TestClientUpDown(t *testing.T) {
	srv := startFeed(t)
	l := mustDecode(t, "type: line\nconnect: "+srv.addr+"\nmax_backoff: 100ms\n"+streamParse)
	col := newCollector()
	r := start(t, l, "client", t.TempDir(), col)
	waitPhase(t, r.env, connectors.PhaseUp)
	srv.down()
	waitPhase(t, r.env, connectors.PhaseDown)
	if e := r.env.State().Snapshot().LastError; !strings.Contains(e, srv.addr) {
		t.Errorf("last error %q does not name the address", e)
	}
	srv.up()
	waitPhase(t, r.env, connectors.PhaseUp)
	n := len(col.wait(t, 1, 10*time.Second))
	col.wait(t, n+1, 10*time.Second) // data flows on the new connection
}

// TestListenerManyClients has several shims send at once; every line arrives
// once, in batches that hold many lines.
func TestListenerManyClients(t *testing.T) {
	l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\nparse: {format: csv, columns: [device, tag, value]}\n")
	col := newCollector()
	r := start(t, l, "lst", t.TempDir(), col)
	const clients, lines = 8, 500
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			var b bytes.Buffer
			for i := 1; i <= lines; i++ {
				fmt.Fprintf(&b, "c%d,seq,%d\n", c, i)
			}
			if _, err := conn.Write(b.Bytes()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	recs := col.wait(t, clients*lines, 10*time.Second)
	per := map[string][]int64{}
	for _, rec := range recs {
		per[rec.Device] = append(per[rec.Device], rec.Value.Long())
	}
	for c := range clients {
		vals := per[fmt.Sprintf("c%d", c)]
		for i, v := range vals {
			if v != int64(i+1) {
				t.Fatalf("client c%d: line %d has value %d: lines of one client must arrive in order, once", c, i+1, v)
			}
		}
		if len(vals) != lines {
			t.Errorf("client c%d: %d records, want %d", c, len(vals), lines)
		}
	}
	r.stop(t)
	recs, batches := col.snapshot()
	if len(recs) != clients*lines {
		t.Errorf("%d records, want %d", len(recs), clients*lines)
	}
	if batches*10 > len(recs) {
		t.Errorf("%d batches for %d lines: lines must be gathered into batches", batches, len(recs))
	}
}

// TestMalformedLines sends a bad column count, a non-number where a double
// is mapped and a 10 MB line between good ones: each bad line is counted and
// skipped, and the same connection and the listener carry on.
func TestMalformedLines(t *testing.T) {
	l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\ndevice: press-1\nparse: {format: csv, columns: [tag, value], value_type: double}\n")
	col := newCollector()
	r := start(t, l, "bad", t.TempDir(), col)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	huge := "temp," + strings.Repeat("9", 10<<20)
	for _, line := range []string{"temp,1", "temp,1,extra", "temp,abc", huge, "temp,2"} {
		if _, err := io.WriteString(conn, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	recs := col.wait(t, 2, 10*time.Second)
	for i, want := range []float64{1, 2} {
		if got := recs[i]; got.Value.Double() != want || got.Tag != "temp" || got.Device != "press-1" {
			t.Errorf("record %d = %s/%s=%v, want press-1/temp=%v", i, got.Device, got.Tag, got.Value, want)
		}
	}
	if n := r.parseErrors(); n != 3 {
		t.Errorf("ferry_parse_errors_total = %v, want 3", n)
	}
	// A second client on the same listener still gets through.
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := io.WriteString(c2, "temp,3\n"); err != nil {
		t.Fatal(err)
	}
	if got := col.wait(t, 3, 10*time.Second)[2].Value.Double(); got != 3 {
		t.Errorf("third record = %v, want 3", got)
	}
	if snap := r.env.State().Snapshot(); snap.Phase != connectors.PhaseUp || snap.Errors != 3 {
		t.Errorf("state %+v, want up with 3 errors", snap)
	}
}

// TestListenerMaxClients refuses clients beyond max_clients.
func TestListenerMaxClients(t *testing.T) {
	l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\nmax_clients: 1\n"+streamParse)
	col := newCollector()
	r := start(t, l, "max", t.TempDir(), col)
	first, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := io.WriteString(first, goodLine+"\n"); err != nil {
		t.Fatal(err)
	}
	col.wait(t, 1, 10*time.Second) // the first client is being served
	second, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("second client was not refused")
	}
	if e := r.env.State().Snapshot().LastError; !strings.Contains(e, "max_clients") {
		t.Errorf("last error %q does not say why", e)
	}
}
