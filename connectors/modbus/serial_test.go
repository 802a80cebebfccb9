package modbus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ferry-gateway/ferry/internal/ptytest"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	sim "github.com/ferry-gateway/ferry/sim/modbus"
)

// The simulator speaks Modbus TCP only. These tests put a small gateway in
// front of it, as a serial-to-Ethernet converter would: it reads RTU (or
// ASCII) frames from a TCP connection or from the master side of a pty,
// forwards their PDUs to the simulator and frames the answers back. A pty
// has no baud rate; when the gateway is given one, it holds each answer
// back for the time the request and the answer would take on such a line,
// so the connector's throughput can be compared with the wire's.

func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func lrc(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// upstream forwards PDUs to the simulator over Modbus TCP.
type upstream struct {
	c   net.Conn
	r   *bufio.Reader
	txn uint16
}

func dialUpstream(addr string) (*upstream, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &upstream{c: c, r: bufio.NewReader(c)}, nil
}

// do forwards one PDU. A device that does not answer within 200ms gets
// a fresh connection for the next request, and this one stays unanswered.
func (u *upstream) do(unit byte, pdu []byte) ([]byte, error) {
	reply, err := u.exchange(unit, pdu)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		_ = u.c.Close()
		c, derr := net.Dial("tcp", u.c.RemoteAddr().String())
		if derr != nil {
			return nil, derr
		}
		u.c, u.r = c, bufio.NewReader(c)
		return nil, nil
	}
	return reply, err
}

func (u *upstream) exchange(unit byte, pdu []byte) ([]byte, error) {
	_ = u.c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	u.txn++
	req := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(req[0:], u.txn)
	binary.BigEndian.PutUint16(req[4:], uint16(len(pdu)+1))
	req[6] = unit
	if _, err := u.c.Write(append(req, pdu...)); err != nil {
		return nil, err
	}
	var hdr [7]byte
	if _, err := io.ReadFull(u.r, hdr[:]); err != nil {
		return nil, err
	}
	reply := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
	_, err := io.ReadFull(u.r, reply)
	return reply, err
}

// serveRTU is the gateway for RTU frames on rw. baud > 0 paces answers.
func serveRTU(rw io.ReadWriter, simAddr string, baud int) error {
	up, err := dialUpstream(simAddr)
	if err != nil {
		return err
	}
	defer up.c.Close()
	r := bufio.NewReader(rw)
	for {
		frame := make([]byte, 2, 260)
		if _, err := io.ReadFull(r, frame); err != nil {
			return err
		}
		more := 6
		if fc := frame[1]; fc == 15 || fc == 16 {
			head := make([]byte, 5)
			if _, err := io.ReadFull(r, head); err != nil {
				return err
			}
			frame = append(frame, head...)
			more = int(head[4]) + 2
		}
		rest := make([]byte, more)
		if _, err := io.ReadFull(r, rest); err != nil {
			return err
		}
		frame = append(frame, rest...)
		n := len(frame)
		if crc16(frame[:n-2]) != binary.LittleEndian.Uint16(frame[n-2:]) {
			continue // a device stays silent on a bad CRC
		}
		pdu, err := up.do(frame[0], frame[1:n-2])
		if err != nil {
			return err
		}
		if pdu == nil {
			continue // the device did not answer
		}
		reply := append([]byte{frame[0]}, pdu...)
		reply = binary.LittleEndian.AppendUint16(reply, crc16(reply))
		if baud > 0 {
			time.Sleep(time.Duration(n+len(reply))*charTime(baud) + frameGap(baud)) // the line's time, emulated
		}
		if _, err := rw.Write(reply); err != nil {
			return err
		}
	}
}

// serveASCII is the gateway for ASCII frames on rw.
func serveASCII(rw io.ReadWriter, simAddr string) error {
	up, err := dialUpstream(simAddr)
	if err != nil {
		return err
	}
	defer up.c.Close()
	r := bufio.NewReader(rw)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		i := strings.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		b, err := hex.DecodeString(line[i+1:])
		if err != nil || len(b) < 3 || lrc(b[:len(b)-1]) != b[len(b)-1] {
			continue
		}
		pdu, err := up.do(b[0], b[1:len(b)-1])
		if err != nil {
			return err
		}
		if pdu == nil {
			continue
		}
		reply := append([]byte{b[0]}, pdu...)
		reply = append(reply, lrc(reply))
		if _, err := fmt.Fprintf(rw, ":%s\r\n", strings.ToUpper(hex.EncodeToString(reply))); err != nil {
			return err
		}
	}
}

// rtuGateway listens on loopback and serves RTU over TCP to the simulator.
func rtuGateway(t testing.TB, simAddr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = serveRTU(c, simAddr, 0)
			}()
		}
	}()
	return ln.Addr().String()
}

const serialTags = `
type: modbus
poll_interval: 1h
timeout: 300ms
max_backoff: 1ms
devices:
  - name: d
    endpoint: %s
    tags:
      - {name: temperature, address: 40001, type: float32}
      - {name: parts, address: 40003, type: int32, byte_order: CDAB}
      - {name: serial, address: 40011, type: string, length: 16}
      - {name: pressure, address: 30002, type: float32, byte_order: DCBA}
      - {name: pump, address: 00001}
      - {name: ack, address: 00002, writable: true}
      - {name: setpoint, address: 40006, scale: 0.1, writable: true}
`

// checkSerialDevice reads the demo device through endpoint, writes a coil
// and a register back, and survives a device that stops answering.
func checkSerialDevice(t *testing.T, s *sim.Server, endpoint string) {
	r := newRig(t, mustDecode(t, "", fmt.Sprintf(serialTags, endpoint)), "")
	got := byTag(r.until(t, wait, allGood))
	for tag, want := range map[string]bus.Value{
		"parts": bus.Long(1000), "serial": bus.String("FRY-0001-A7"),
		"pressure": bus.Double(float64(float32(4.2))), "pump": bus.Bool(true), "ack": bus.Bool(false),
	} {
		if !got[tag].Value.Equal(want) {
			t.Errorf("%s = %v, want %v", tag, got[tag].Value, want)
		}
	}
	if err := r.m.WriteTag(t.Context(), "d", "ack", bus.Bool(true)); err != nil || !s.Unit(1).Coils().Bool(1) {
		t.Errorf("coil write: %v", err)
	}
	if err := r.m.WriteTag(t.Context(), "d", "setpoint", bus.Double(19.5)); err != nil || s.Unit(1).HoldingRegisters().Uint16(5, sim.ABCD) != 195 {
		t.Errorf("register write: %v", err)
	}
	r.until(t, wait, func(b *bus.Batch) bool { return byTag(b)["ack"].Value.Equal(bus.Bool(true)) })
	s.SetSilent(true)
	r.poke("d")
	// A cycle that began before the silence may still deliver GOOD values;
	// the first BAD batch must say why.
	if b := r.until(t, wait, allBad); b.Records[0].Status != StatusNoAnswer {
		t.Errorf("silent device: %+v", b.Records)
	}
	s.SetSilent(false)
	r.poke("d")
	r.until(t, wait, allGood)
}

func TestRTUOverTCP(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	checkSerialDevice(t, s, "rtu-over-tcp://"+rtuGateway(t, s.Addr()))
}

func TestRTUSerial(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	m, path := ptytest.Open(t)
	go func() { _ = serveRTU(m, s.Addr(), 0) }()
	checkSerialDevice(t, s, "rtu://"+path+"?baud=115200&parity=N&stop_bits=2")
}

func TestASCIISerial(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	m, path := ptytest.Open(t)
	go func() { _ = serveASCII(m, s.Addr()) }()
	checkSerialDevice(t, s, "ascii://"+path+"?baud=9600")
}

// TestRTUWireEfficiency reads 125-register blocks over a pty whose gateway
// emulates a 115200-baud line, and requires at least 85% of what the line
// allows (rtuWireLimit).
func TestRTUWireEfficiency(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a second")
	}
	s := startSim(t, sim.DemoConfig())
	m, path := ptytest.Open(t)
	const baud = 115200
	go func() { _ = serveRTU(m, s.Addr(), baud) }()
	c, err := Open(fmt.Sprintf("rtu://%s?baud=%d&parity=N&stop_bits=2", path, baud), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Registers(t.Context(), 1, Holding, 0, 125); err != nil { // opens the port
		t.Fatal(err)
	}
	const n = 30
	begin := time.Now()
	for range n {
		if _, _, err := c.Registers(t.Context(), 1, Holding, 0, 125); err != nil {
			t.Fatal(err)
		}
	}
	got := float64(n*125) / time.Since(begin).Seconds()
	_, limit := rtuWireLimit(baud)
	t.Logf("RTU at %d baud: %.0f registers/s, %.1f%% of the line's %.0f", baud, got, 100*got/limit, limit)
	if got < 0.85*limit {
		t.Errorf("%.0f registers/s is below 85%% of the line's %.0f", got, limit)
	}
}

// TestRTUFraming feeds the RTU transport broken and odd replies.
func TestRTUFraming(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte
		want  error
	}{
		{"short", []byte{1, 3}, io.ErrUnexpectedEOF},
		{"unknown function", []byte{1, 0x2B, 0, 0, 0}, ErrMalformed},
		{"bad crc", []byte{1, 3, 2, 0, 7, 0, 0}, ErrMalformed},
		{"wrong unit", withCRC([]byte{9, 3, 2, 0, 7}), ErrMalformed},
		{"exception", withCRC([]byte{1, 0x83, 2}), nil},
		{"ok", withCRC([]byte{1, 3, 2, 0, 7}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := net.Pipe()
			go func() {
				buf := make([]byte, 8)
				_, _ = io.ReadFull(srv, buf)
				_, _ = srv.Write(tc.reply)
				_ = srv.Close()
			}()
			l := newLink(Endpoint{Transport: "rtu-over-tcp"}, time.Second)
			l.closer.(*rtuTransport).open = func(time.Duration) (io.ReadWriteCloser, error) { return cli, nil }
			data, err := l.read(t.Context(), 1, time.Second, 0, Holding, 0, 1)
			var ee *ExceptionError
			switch {
			case tc.name == "exception":
				if !errors.As(err, &ee) || ee.Code != 2 {
					t.Fatalf("got %v, want exception 2", err)
				}
			case tc.want == nil:
				if err != nil || !bytes.Equal(data, []byte{0, 7}) {
					t.Fatalf("got %v %v", data, err)
				}
			case !errors.Is(err, tc.want) && !strings.Contains(err.Error(), "modbus:"):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func withCRC(b []byte) []byte { return binary.LittleEndian.AppendUint16(b, crc16(b)) }
