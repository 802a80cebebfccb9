package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
)

// demoPorts are the loopback ports the embedded demo listens on, each with
// what listens there. A test holds this list to examples/demo.yaml.
var demoPorts = []struct {
	port int
	what string
}{
	{8080, "the status page and admin API"},
	{1883, "the embedded MQTT broker"},
	{5020, "the simulated Modbus device"},
	{4840, "the simulated OPC UA server"},
	{18830, "the simulated cloud's broker"},
	{18831, "the simulated WAN link to the cloud"},
}

var demoAddr = regexp.MustCompile(`127\.0\.0\.1:(\d+)\b`)

// offsetDemo moves every loopback port of the demo config by offset, the
// clients' (Modbus and OPC UA endpoints, the uplink) with the listeners', so
// that two demos run side by side and neither attaches to the other's
// servers.
func offsetDemo(yaml []byte, offset int) ([]byte, error) {
	if offset == 0 {
		return yaml, nil
	}
	var bad error
	out := demoAddr.ReplaceAllFunc(yaml, func(m []byte) []byte {
		p, _ := strconv.Atoi(string(m[len("127.0.0.1:"):]))
		if p+offset < 1 || p+offset > 65535 {
			bad = fmt.Errorf("--demo-port-offset %d moves port %d out of 1..65535", offset, p)
		}
		return []byte("127.0.0.1:" + strconv.Itoa(p+offset))
	})
	return out, bad
}

// checkDemoPorts tries every port of the demo before anything starts, so
// that a port taken by another program (a system mosquitto on 1883 is
// common) or another demo stops the demo at once with its name, instead of
// one module retrying while the others talk to the foreign server.
func checkDemoPorts(offset int, adminAddr string) error {
	var taken []string
	for _, p := range demoPorts {
		addr := "127.0.0.1:" + strconv.Itoa(p.port+offset)
		if p.port == 8080 && adminAddr != "" {
			if adminAddr == "off" {
				continue
			}
			addr = adminAddr
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			taken = append(taken, fmt.Sprintf("  %s (%s): %v", addr, p.what, unwrapOp(err)))
			continue
		}
		ln.Close()
	}
	if len(taken) == 0 {
		return nil
	}
	next := offset + 100
	return fmt.Errorf("the demo cannot start: %s taken, by another program or another demo:\n%s\n"+
		"Stop what listens there, or move every port of the demo (and its data) with:\n"+
		"  ferry run --demo-port-offset %d --data-dir data-%d",
		portsPhrase(len(taken)), strings.Join(taken, "\n"), next, next)
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func portsPhrase(n int) string {
	if n == 1 {
		return "a port is"
	}
	return fmt.Sprintf("%d ports are", n)
}

// printDemoPlaces says where the demo's pieces are, with the ports it runs
// on, so that a moved demo is as easy to reach as the default one.
func printDemoPlaces(w io.Writer, offset int, adminAddr, dataDir string) {
	port := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p+offset) }
	admin := port(8080)
	if adminAddr != "" {
		admin = adminAddr
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ferry demo:")
	if admin != "off" {
		fmt.Fprintf(tw, "  status page\thttp://%s\n", admin)
	}
	fmt.Fprintf(tw, "  MQTT broker\t%s\tmosquitto_sub -p %d -t 'demo-plant/#' -v\n", port(1883), 1883+offset)
	fmt.Fprintf(tw, "  Modbus device\ttcp://%s\tferry scan modbus tcp://%s --range 0-17\n", port(5020), port(5020))
	fmt.Fprintf(tw, "  OPC UA server\topc.tcp://%s\tferry browse opc.tcp://%s\n", port(4840), port(4840))
	fmt.Fprintf(tw, "  cloud\t%s\tbehind the WAN link %s (up 20 s, cut 10 s)\n", port(18830), port(18831))
	fmt.Fprintf(tw, "  data\t%s\tferry spool inspect --data-dir %s\n", dataDir, dataDir)
	_ = tw.Flush()
}
