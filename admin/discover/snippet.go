package discover

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
)

// Snippet is what was picked in discovery, to become a connector section.
type Snippet struct {
	Kind     string `json:"kind"`             // opcua or modbus
	Name     string `json:"name"`             // the module's name
	Endpoint string `json:"endpoint"`         // as browsed or scanned
	Device   string `json:"device,omitempty"` // the device's name in records
	Security string `json:"security,omitempty"`
	Unit     int    `json:"unit,omitempty"` // modbus
	// Nodes are the picked OPC UA variables.
	Nodes []PickedNode `json:"nodes,omitempty"`
	// Registers are the picked Modbus addresses, each with the reading
	// the integrator recognised.
	Registers []PickedRegister `json:"registers,omitempty"`
}

// PickedNode is an OPC UA variable to subscribe to.
type PickedNode struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PickedRegister is a Modbus tag.
type PickedRegister struct {
	Name      string `json:"name"`
	Area      string `json:"area"`
	Address   int    `json:"address"` // 0-based
	Type      string `json:"type"`
	ByteOrder string `json:"byte_order,omitempty"`
	Writable  bool   `json:"writable,omitempty"`
}

// ErrNothingPicked is a snippet without a node or register.
var ErrNothingPicked = errors.New("pick at least one node or register")

// YAML writes the connector section and checks it with the config loader,
// so what is shown loads as it is pasted under connectors:. The error is
// the loader's, with lines of the snippet.
func (s *Snippet) YAML() (string, error) {
	var b strings.Builder
	if s.Name == "" {
		s.Name = s.Kind
	}
	fmt.Fprintf(&b, "connectors:\n  %s:\n", s.Name)
	switch s.Kind {
	case "opcua":
		if len(s.Nodes) == 0 {
			return "", ErrNothingPicked
		}
		policy, mode := splitSecurity(s.Security)
		if policy == "" {
			policy, mode = "None", "None"
		}
		if mode == "" {
			mode = "SignAndEncrypt"
			if policy == "None" {
				mode = "None"
			}
		}
		fmt.Fprintf(&b, "    type: opcua\n    endpoint: %s\n", quote(s.Endpoint))
		if s.Device != "" {
			fmt.Fprintf(&b, "    device: %s\n", quote(s.Device))
		}
		fmt.Fprintf(&b, "    security: {policy: %s, mode: %s}\n    nodes:\n", quote(policy), quote(mode))
		for _, n := range s.Nodes {
			fmt.Fprintf(&b, "      - {id: %s, name: %s}\n", quote(n.ID), quote(n.Name))
		}
	case "modbus":
		if len(s.Registers) == 0 {
			return "", ErrNothingPicked
		}
		dev := s.Device
		if dev == "" {
			dev = s.Name
		}
		unit := s.Unit
		if unit == 0 {
			unit = 1
		}
		fmt.Fprintf(&b, "    type: modbus\n    devices:\n      - name: %s\n        endpoint: %s\n        unit: %d\n        tags:\n", quote(dev), quote(s.Endpoint), unit)
		for _, r := range s.Registers {
			fmt.Fprintf(&b, "          - {name: %s, area: %s, address: %d", quote(r.Name), quote(r.Area), r.Address)
			if r.Type != "" {
				fmt.Fprintf(&b, ", type: %s", quote(r.Type))
			}
			if r.ByteOrder != "" {
				fmt.Fprintf(&b, ", byte_order: %s", quote(r.ByteOrder))
			}
			if r.Writable {
				b.WriteString(", writable: true")
			}
			b.WriteString("}\n")
		}
	default:
		return "", fmt.Errorf("kind %q is not opcua or modbus", s.Kind)
	}
	out := b.String()
	if _, err := router.Load("snippet.yaml", []byte(out), conf.Resolver{Env: func(string) (string, bool) { return "", false }}); err != nil {
		return out, err
	}
	return out, nil
}

var plain = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)

// quote leaves a plain word as it is and puts anything else in double
// quotes (YAML's are JSON's).
func quote(s string) string {
	if plain.MatchString(s) && !strings.Contains(s, "//") {
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~":
		default:
			if _, err := strconv.ParseFloat(s, 64); err != nil {
				return s
			}
		}
	}
	return strconv.Quote(s)
}

// TagName proposes a tag name for an OPC UA node from its browse path or
// NodeId: the identifier after s= (or i=), with what a tag name cannot
// hold replaced.
func TagName(nodeID string) string {
	name := nodeID
	if i := strings.LastIndex(nodeID, ";s="); i >= 0 {
		name = nodeID[i+3:]
	} else if i := strings.LastIndex(nodeID, ";i="); i >= 0 {
		name = "i" + nodeID[i+3:]
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == ';' || r == '=' {
			return '_'
		}
		return r
	}, name)
}
