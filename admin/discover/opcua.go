package discover

import (
	"context"
	"time"

	"github.com/ferry-gateway/ferry/connectors/opcua"
)

// Browse is one level of an OPC UA address space to read: the children of
// Node (the Objects folder when empty).
type Browse struct {
	Endpoint string `json:"endpoint"`
	Node     string `json:"node,omitempty"`
	// Security is POLICY/MODE as `ferry browse --security` takes it;
	// default None.
	Security string `json:"security,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Dir holds the application certificate and trust list.
	Dir     string        `json:"-"`
	Timeout time.Duration `json:"-"`
}

// Node is one child, as the tree shows it.
type Node = opcua.BrowseEntry

// BrowseLevel reads the children of b.Node with their data types, access
// levels and current values: the tree on the page expands one level a
// click, so a server of 100,000 nodes is never read whole.
func BrowseLevel(ctx context.Context, b Browse) ([]Node, error) {
	policy, mode := splitSecurity(b.Security)
	out := []Node{}
	err := opcua.Browse(ctx, opcua.BrowseOptions{
		Endpoint: b.Endpoint, Policy: policy, Mode: mode, Username: b.Username, Password: b.Password,
		Root: b.Node, Depth: 1, Dir: b.Dir, Timeout: b.Timeout, Values: true,
	}, func(e opcua.BrowseEntry) { out = append(out, e) })
	return out, err
}

func splitSecurity(s string) (policy, mode string) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
