package opcua

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// BrowseOptions configure Browse, for `ferry browse`.
type BrowseOptions struct {
	Endpoint string
	// Policy and Mode as in the connector's security section; default None.
	Policy, Mode string
	// Username and Password select user name authentication.
	Username, Password string
	// Root is the NodeId to start from; default the Objects folder.
	Root string
	// Depth is how many levels below the root to show; default 3.
	Depth int
	// Dir holds the application certificate (Dir/own) and the trust
	// list (Dir/trusted, rejected ones in Dir/rejected). It is only
	// touched when the session needs the server's certificate (a secured
	// endpoint or an encrypted password); an anonymous browse over policy
	// None writes nothing to disk. Default DefaultBrowseDir().
	Dir string
	// Server includes the Server object (i=2253) when browsing from the
	// Objects folder; it is left out by default because its hundred-odd
	// diagnostics nodes come first and hide the user's nodes.
	Server bool
	// TrustOnFirstUse trusts the server certificate if none is trusted
	// for its application URI yet.
	TrustOnFirstUse bool
	Timeout         time.Duration
	// Values reads each variable's current value too (the status page's
	// discovery tree shows it).
	Values bool
}

// ErrNoSuchNode is wrapped when a node asked for (a browse root) is not in
// the server's address space.
var ErrNoSuchNode = errors.New("no such node")

// DefaultBrowseDir is where `ferry browse` keeps its certificate and trust
// list when it needs them: the user's configuration directory
// (~/.config/ferry/browse/pki on Linux), not the working directory.
func DefaultBrowseDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("browse: no directory for the certificate and trust list (give --data-dir): %w", err)
	}
	return filepath.Join(d, "ferry", "browse", "pki"), nil
}

// exists reads n's NodeClass: a node the server does not know is
// ErrNoSuchNode (an empty table would look like an empty folder).
func (s *session) exists(ctx context.Context, n *ua.NodeID) error {
	res, err := call[*ua.ReadResponse](ctx, s, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: n, AttributeID: ua.AttributeIDNodeClass, DataEncoding: &ua.QualifiedName{}}}})
	if err != nil {
		return err
	}
	if len(res.Results) == 1 && res.Results[0] != nil {
		switch res.Results[0].Status {
		case ua.StatusBadNodeIDUnknown, ua.StatusBadNodeIDInvalid:
			return fmt.Errorf("%w: the server says %s", ErrNoSuchNode, statusName(res.Results[0].Status))
		}
	}
	return nil
}

// BrowseEntry is one node of the address space.
type BrowseEntry struct {
	Depth      int // 0 for the root's children
	NodeID     string
	BrowseName string // with the namespace index when not 0: 2:Temp
	NodeClass  string
	DataType   string // variables only
	Access     string // variables only: r, w, rw or -
	Value      string // variables only, with Values: the current value as text
}

// Browse connects like the connector does and walks the address space
// depth first from the root, calling visit for every node.
func Browse(ctx context.Context, o BrowseOptions, visit func(BrowseEntry)) error {
	if o.Depth <= 0 {
		o.Depth = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	cfg := Config{Endpoint: o.Endpoint, Security: SecurityConfig{Policy: o.Policy, Mode: o.Mode}, Nodes: []NodeConfig{{ID: "i=85"}}}
	if o.Username != "" {
		cfg.Auth = AuthConfig{Type: "username", Username: o.Username, Password: o.Password}
	}
	cfg.SetDefaults()
	cfg.Timeout = conf.Duration(o.Timeout)
	if err := cfg.Validate(); err != nil {
		return err
	}
	root := ua.NewNumericNodeID(0, id.ObjectsFolder)
	var rootRef NodeRef
	if o.Root != "" {
		ref, err := ParseNodeRef(o.Root)
		if err != nil {
			return err
		}
		rootRef = ref
	}
	var ident identity
	var trust trustStore
	if cfg.Security.Policy == "None" && cfg.Auth.Type == "anonymous" {
		// Nothing of the server's certificate is used: a throw-away
		// identity keeps the working directory clean.
		der, key, err := newCertificate("urn:ferry:browse", "ferry browse", "localhost")
		if err != nil {
			return fmt.Errorf("generate application certificate: %w", err)
		}
		ident = identity{der: der, key: key, uri: "urn:ferry:browse"}
	} else {
		if o.Dir == "" {
			d, err := DefaultBrowseDir()
			if err != nil {
				return err
			}
			o.Dir = d
		}
		var err error
		if ident, _, err = loadOrCreateIdentity("", "", o.Dir, "urn:ferry:browse", "ferry browse"); err != nil {
			return err
		}
		trust = trustStore{dir: filepath.Join(o.Dir, "trusted"), rejected: filepath.Join(o.Dir, "rejected"), tofu: o.TrustOnFirstUse}
		if err := trust.ensure(); err != nil {
			return err
		}
	}
	c, _, err := dial(ctx, &cfg, dialOptions{id: ident, trust: trust, sessionTag: "browse", timeout: o.Timeout, requestTO: o.Timeout})
	if err != nil {
		return fmt.Errorf("%s: %w", o.Endpoint, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()
	if rootRef.ID != nil {
		if root, err = rootRef.Resolve(c.Namespaces()); err != nil {
			return fmt.Errorf("%w: root %s: %v", ErrNoSuchNode, o.Root, err)
		}
	}
	s := &session{o: &OPCUA{Config: cfg}, c: c}
	if err := s.exists(ctx, root); err != nil {
		return fmt.Errorf("root %s: %w", root, err)
	}
	s.limits = s.readLimits(ctx)
	b := &browser{s: s, children: map[string][]*ua.ReferenceDescription{}, values: o.Values}
	if !o.Server && root.Namespace() == 0 && root.IntID() == id.ObjectsFolder {
		b.skip = ua.NewNumericNodeID(0, id.Server).String()
	}
	return b.walk(ctx, root, 0, o.Depth, map[string]bool{root.String(): true}, visit)
}

func (b *browser) walk(ctx context.Context, n *ua.NodeID, depth, max int, seen map[string]bool, visit func(BrowseEntry)) error {
	refs, err := b.browseAll(ctx, n)
	if err != nil {
		return err
	}
	// one Read for the data type and access level (and value) of the
	// variables
	attrs := []ua.AttributeID{ua.AttributeIDDataType, ua.AttributeIDAccessLevel}
	if b.values {
		attrs = append(attrs, ua.AttributeIDValue)
	}
	na := len(attrs)
	var vars []int
	req := &ua.ReadRequest{}
	for i, r := range refs {
		if r.NodeClass == ua.NodeClassVariable && r.NodeID != nil {
			vars = append(vars, i)
			for _, a := range attrs {
				req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: r.NodeID.NodeID, AttributeID: a, DataEncoding: &ua.QualifiedName{}})
			}
		}
	}
	types := map[int][3]string{}
	if len(vars) > 0 {
		per := na * (chunk(b.s.limits.maxNodesPerRead, 1000) / na)
		if per < na {
			per = na
		}
		var results []*ua.DataValue
		for start := 0; start < len(req.NodesToRead); start += per {
			part := &ua.ReadRequest{NodesToRead: req.NodesToRead[start:min(start+per, len(req.NodesToRead))]}
			res, err := call[*ua.ReadResponse](ctx, b.s, part)
			if err != nil {
				return err
			}
			results = append(results, res.Results...)
		}
		var untyped []int // variables whose DataType attribute the server did not give
		for k, i := range vars {
			if na*k+na-1 < len(results) {
				t := [3]string{dataTypeName(results[na*k]), accessName(results[na*k+1])}
				if b.values {
					t[2] = valueText(results[na*k+2])
				}
				types[i] = t
				if t[0] == "?" {
					untyped = append(untyped, i)
				}
			}
		}
		if err := b.typesFromValues(ctx, refs, untyped, types); err != nil {
			return err
		}
	}
	for i, r := range refs {
		if r.NodeID == nil || r.NodeID.NodeID == nil {
			continue
		}
		if depth == 0 && b.skip != "" && r.NodeID.NodeID.String() == b.skip {
			continue
		}
		e := BrowseEntry{Depth: depth, NodeID: r.NodeID.NodeID.String(), NodeClass: strings.TrimPrefix(r.NodeClass.String(), "NodeClass")}
		if r.BrowseName != nil {
			e.BrowseName = qualifiedName(r.BrowseName)
		}
		if t, ok := types[i]; ok {
			e.DataType, e.Access, e.Value = t[0], t[1], t[2]
		}
		visit(e)
		key := r.NodeID.NodeID.String()
		if depth+1 < max && !seen[key] && r.NodeID.ServerIndex == 0 {
			seen[key] = true
			if err := b.walk(ctx, r.NodeID.NodeID, depth+1, max, seen, visit); err != nil {
				return err
			}
		}
	}
	return nil
}

// typesFromValues names the data type of variables whose server does not
// serve the DataType attribute (gopcua's server, for its own nodes) by the
// built-in type of their current value, so the table never shows a bare
// "?" where the value says what it is.
func (b *browser) typesFromValues(ctx context.Context, refs []*ua.ReferenceDescription, idx []int, types map[int][3]string) error {
	per := chunk(b.s.limits.maxNodesPerRead, 1000)
	for start := 0; start < len(idx); start += per {
		part := idx[start:min(start+per, len(idx))]
		req := &ua.ReadRequest{}
		for _, i := range part {
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: refs[i].NodeID.NodeID, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
		}
		res, err := call[*ua.ReadResponse](ctx, b.s, req)
		if err != nil {
			return err
		}
		for k, i := range part {
			if k < len(res.Results) {
				if dv := res.Results[k]; dv != nil && dv.Value != nil && dv.Status == ua.StatusOK {
					t := types[i]
					t[0] = variantTypeName(dv.Value)
					types[i] = t
				}
			}
		}
	}
	return nil
}

// variantTypeName is the built-in type of a value: Double, String[] ….
func variantTypeName(v *ua.Variant) string {
	n := strings.TrimPrefix(v.Type().String(), "TypeID")
	if v.ArrayLength() > 0 || len(v.ArrayDimensions()) > 0 {
		n += "[]"
	}
	return n
}

// browseAll browses every forward hierarchical reference of a node,
// properties included (unlike discovery for the connector).
func (b *browser) browseAll(ctx context.Context, n *ua.NodeID) ([]*ua.ReferenceDescription, error) {
	res, err := call[*ua.BrowseResponse](ctx, b.s, &ua.BrowseRequest{
		View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: n, BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: hierarchical,
			IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll),
		}},
	})
	if err != nil {
		return nil, err
	}
	if len(res.Results) == 0 {
		return nil, nil
	}
	refs := b.rest(ctx, res.Results[0])
	// some servers (gopcua's among them) list a reference twice
	seen := map[string]bool{}
	out := refs[:0]
	for _, r := range refs {
		if r.NodeID == nil || r.NodeID.NodeID == nil {
			continue
		}
		if k := r.NodeID.NodeID.String(); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, nil
}

func dataTypeName(dv *ua.DataValue) string {
	if dv == nil || dv.Value == nil {
		return "?"
	}
	var n *ua.NodeID
	switch x := dv.Value.Value().(type) {
	case *ua.NodeID:
		n = x
	case *ua.ExpandedNodeID:
		n = x.NodeID
	}
	if n == nil {
		return "?"
	}
	if n.Namespace() == 0 && n.Type() != ua.NodeIDTypeString {
		if name := id.Name(n.IntID()); name != "" {
			return name
		}
	}
	return n.String()
}

// valueText is a variable's value for a person to read; a bad status
// instead of a value says so.
func valueText(dv *ua.DataValue) string {
	switch {
	case dv == nil:
		return ""
	case dv.Status != ua.StatusOK:
		return dv.Status.Error()
	case dv.Value == nil:
		return "null"
	}
	return fmt.Sprint(dv.Value.Value())
}

func accessName(dv *ua.DataValue) string {
	if dv == nil || dv.Value == nil {
		return "?"
	}
	b, ok := dv.Value.Value().(uint8)
	if !ok {
		return "?"
	}
	s := ""
	if b&byte(ua.AccessLevelTypeCurrentRead) != 0 {
		s += "r"
	}
	if b&byte(ua.AccessLevelTypeCurrentWrite) != 0 {
		s += "w"
	}
	if s == "" {
		s = "-"
	}
	return s
}
