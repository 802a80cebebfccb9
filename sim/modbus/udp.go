package modbus

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
)

// listenUDP binds UDP on the TCP listener's port and serves it until Close.
func (s *Server) listenUDP(ctx context.Context) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", s.Addr())
	if err != nil {
		return fmt.Errorf("modbus sim: listen on udp %s: %w", s.Addr(), err)
	}
	s.udp = pc
	s.log.Info("modbus sim listening", "addr", pc.LocalAddr().String(), "transport", "udp")
	s.wg.Add(1)
	go s.serveUDP(pc)
	return nil
}

// UDPAddr returns the UDP address (Config.UDP), or "" without UDP.
func (s *Server) UDPAddr() string {
	if s.udp == nil {
		return ""
	}
	return s.udp.LocalAddr().String()
}

// serveUDP answers datagrams one at a time: each holds one MBAP frame.
// Faults apply as on TCP, except that a drop is a datagram not answered
// and a truncated frame is half a datagram.
func (s *Server) serveUDP(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	out := make([]byte, 0, mbapHeader+maxPDU)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if n < mbapHeader+1 {
			continue
		}
		txn := binary.BigEndian.Uint16(buf[0:])
		proto := binary.BigEndian.Uint16(buf[2:])
		length := int(binary.BigEndian.Uint16(buf[4:]))
		unit := buf[6]
		if proto != 0 || length != n-6 || length < 2 || length > maxPDU+1 {
			continue
		}
		q := parseRequest(buf[mbapHeader:n])
		v := s.faults.decide(unit, q.fc, q.area, q.addr, q.qty)
		if v.drop || v.silent {
			s.cnt.unanswered.Add(1)
			continue
		}
		if !delay(v.delay, s.done) {
			return
		}
		out = s.reply(out, txn, unit, q, v)
		if v.malform == TruncatedFrame {
			out = out[:mbapHeader+(len(out)-mbapHeader)/2]
		}
		_, _ = pc.WriteTo(out, from)
	}
}
