package conf

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// HostPort splits a listen or dial address "host:port" (host may be empty
// or a bracketed IPv6 address; port 0 means any free port).
func HostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, errors.New("expected host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %s is not 0..65535", port)
	}
	return host, n, nil
}
