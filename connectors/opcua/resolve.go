package opcua

import (
	"context"
	"fmt"
	"strings"

	"github.com/gobwas/glob"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// item is one resolved node to read.
type item struct {
	tag    string
	unit   string
	node   *ua.NodeID
	handle uint32         // client handle: index in session.items + 1
	mon    *MonitorConfig // the node's own monitored item settings, nil for the subscription's
	root   int            // 1 + the index of the browse root that found it, 0 for a configured node
	unitOK bool           // unit from the config: the server's EngineeringUnits do not override it
	// access is the node's UserAccessLevel, when accessOK (serverAccess).
	access   uint8
	accessOK bool
}

// badItem is a configured node that could not be resolved or monitored.
type badItem struct {
	tag, unit, node string
	code            ua.StatusCode
}

// resolve turns the configured nodes and browse roots into items, against
// the server as it is now: namespace URIs are looked up in its namespace
// array and browse paths followed again on every session, because a
// restarted server may number its namespaces differently. Nodes that do not
// resolve come back as bad items; only a failed service call is an error.
func (s *session) resolve(ctx context.Context) ([]*item, []badItem, error) {
	var items []*item
	var bad []badItem
	seenNode := map[string]bool{}
	seenTag := map[string]bool{}
	add := func(tag, unit string, n *ua.NodeID, mon *MonitorConfig, root int) {
		key := n.String()
		if seenNode[key] || seenTag[tag] {
			return
		}
		seenNode[key], seenTag[tag] = true, true
		if mon != nil && !mon.set() {
			mon = nil
		}
		items = append(items, &item{tag: tag, unit: unit, unitOK: unit != "", node: n, handle: uint32(len(items) + 1), mon: mon, root: root})
	}
	ns := s.c.Namespaces()
	b := &browser{s: s, children: map[string][]*ua.ReferenceDescription{}}
	for i := range s.o.Nodes {
		n := &s.o.Nodes[i]
		switch {
		case n.ID != "":
			ref, err := ParseNodeRef(n.ID)
			tag := n.Name
			if tag == "" && err == nil {
				tag = defaultTag(ref.ID)
			}
			if err != nil {
				bad = append(bad, badItem{tag: tag, unit: n.Unit, node: n.ID, code: ua.StatusBadNodeIDInvalid})
				continue
			}
			id, err := ref.Resolve(ns)
			if err != nil {
				bad = append(bad, badItem{tag: tag, unit: n.Unit, node: n.ID, code: ua.StatusBadNodeIDUnknown})
				continue
			}
			add(tag, n.Unit, id, &n.Monitor, 0)
		case n.Path != "":
			tag := n.Name
			if tag == "" {
				tag = plainPath(n.Path)
			}
			steps, _ := ParseBrowsePath(n.Path)
			id, code, err := b.follow(ctx, ua.NewNumericNodeID(0, id.ObjectsFolder), steps)
			if err != nil {
				return nil, nil, err
			}
			if code != ua.StatusOK {
				bad = append(bad, badItem{tag: tag, unit: n.Unit, node: n.Path, code: code})
				continue
			}
			add(tag, n.Unit, id, &n.Monitor, 0)
		}
	}
	err := s.browseRoots(ctx, b, ns, func(tag string, n *ua.NodeID, mon *MonitorConfig, root int) {
		add(tag, "", n, mon, root)
	})
	if err != nil {
		return nil, nil, err
	}
	return items, bad, nil
}

// browseRoots runs the configured browse roots and hands every variable
// found to found, with the root's number (1-based).
func (s *session) browseRoots(ctx context.Context, b *browser, ns []string, found func(tag string, n *ua.NodeID, mon *MonitorConfig, root int)) error {
	for i := range s.o.Browse {
		r := &s.o.Browse[i]
		root := ua.NewNumericNodeID(0, id.ObjectsFolder)
		label := "Objects"
		switch {
		case r.Root != "":
			label = r.Root
			ref, err := ParseNodeRef(r.Root)
			if err == nil {
				root, err = ref.Resolve(ns)
			}
			if err != nil {
				s.o.logBurst("browse root does not resolve", slogString("root", r.Root), slogString("error", err.Error()))
				continue
			}
		case r.RootPath != "":
			label = r.RootPath
			steps, _ := ParseBrowsePath(r.RootPath)
			id, code, err := b.follow(ctx, root, steps)
			if err != nil {
				return err
			}
			if code != ua.StatusOK {
				s.o.logBurst("browse root does not resolve", slogString("root", r.RootPath), slogString("status", statusName(code)))
				continue
			}
			root = id
		}
		vars, err := b.variables(ctx, root, *r)
		if err != nil {
			return fmt.Errorf("browse %s: %w", label, err)
		}
		for _, f := range vars {
			found(r.Prefix+f.path, f.id, &r.Monitor, i+1)
		}
	}
	return nil
}

// defaultTag names a node given only by its NodeId: its identifier.
func defaultTag(n *ua.NodeID) string {
	switch n.Type() {
	case ua.NodeIDTypeString, ua.NodeIDTypeGUID, ua.NodeIDTypeByteString:
		return n.StringID()
	}
	return fmt.Sprintf("i=%d", n.IntID())
}

// plainPath drops namespace qualifiers from a browse path: 2:Plant/2:T → Plant/T.
func plainPath(p string) string {
	steps, err := ParseBrowsePath(p)
	if err != nil {
		return p
	}
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.Name
	}
	return strings.Join(names, "/")
}

// browser browses with a per-session cache of children.
type browser struct {
	s        *session
	children map[string][]*ua.ReferenceDescription
	values   bool   // Browse reads variables' values too (BrowseOptions.Values)
	skip     string // a child of the root Browse leaves out (the Server object)
}

// hierarchical forward references, minus properties
var hierarchical = ua.NewNumericNodeID(0, id.HierarchicalReferences)

// browse returns the forward hierarchical references of many nodes,
// following continuation points, in calls of at most MaxNodesPerBrowse.
func (b *browser) browse(ctx context.Context, nodes []*ua.NodeID) ([][]*ua.ReferenceDescription, error) {
	out := make([][]*ua.ReferenceDescription, len(nodes))
	var todo []int
	for i, n := range nodes {
		if refs, ok := b.children[n.String()]; ok {
			out[i] = refs
		} else {
			todo = append(todo, i)
		}
	}
	per := chunk(b.s.limits.maxNodesPerBrowse, 100)
	for start := 0; start < len(todo); start += per {
		part := todo[start:min(start+per, len(todo))]
		req := &ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, RequestedMaxReferencesPerNode: 1000}
		for _, i := range part {
			req.NodesToBrowse = append(req.NodesToBrowse, &ua.BrowseDescription{
				NodeID: nodes[i], BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: hierarchical,
				IncludeSubtypes: true, NodeClassMask: uint32(ua.NodeClassObject | ua.NodeClassVariable),
				ResultMask: uint32(ua.BrowseResultMaskAll),
			})
		}
		res, err := call[*ua.BrowseResponse](ctx, b.s, req)
		if err != nil {
			return nil, err
		}
		for k, i := range part {
			if k >= len(res.Results) {
				break
			}
			refs := b.rest(ctx, res.Results[k])
			var keep []*ua.ReferenceDescription
			for _, ref := range refs {
				if ref.ReferenceTypeID != nil && ref.ReferenceTypeID.Namespace() == 0 && ref.ReferenceTypeID.IntID() == id.HasProperty {
					continue
				}
				keep = append(keep, ref)
			}
			b.children[nodes[i].String()] = keep
			out[i] = keep
		}
	}
	return out, nil
}

// rest returns a browse result's references with those the server held
// back for continuation points. A BrowseNext that fails ends the list
// early: a partial view of a node beats none.
func (b *browser) rest(ctx context.Context, r *ua.BrowseResult) []*ua.ReferenceDescription {
	refs := r.References
	cp := r.ContinuationPoint
	for len(cp) > 0 {
		next, err := call[*ua.BrowseNextResponse](ctx, b.s, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{cp}})
		if err != nil || len(next.Results) == 0 {
			break
		}
		refs = append(refs, next.Results[0].References...)
		cp = next.Results[0].ContinuationPoint
	}
	return refs
}

// follow walks a browse path from start; a name matches a browse name in
// the step's namespace, or in any namespace when the step names none.
func (b *browser) follow(ctx context.Context, start *ua.NodeID, steps []BrowseStep) (*ua.NodeID, ua.StatusCode, error) {
	cur := start
	for _, st := range steps {
		kids, err := b.browse(ctx, []*ua.NodeID{cur})
		if err != nil {
			return nil, 0, err
		}
		var next *ua.NodeID
		for _, ref := range kids[0] {
			if ref.BrowseName == nil || ref.BrowseName.Name != st.Name || ref.NodeID == nil {
				continue
			}
			if st.NS >= 0 && int(ref.BrowseName.NamespaceIndex) != st.NS {
				continue
			}
			next = ref.NodeID.NodeID
			break
		}
		if next == nil {
			return nil, ua.StatusBadNoMatch, nil
		}
		cur = next
	}
	return cur, ua.StatusOK, nil
}

type found struct {
	path string
	id   *ua.NodeID
}

// variables walks down from root, level by level up to r.Depth, and
// returns the variables whose path below root passes the filters.
func (b *browser) variables(ctx context.Context, root *ua.NodeID, r BrowseConfig) ([]found, error) {
	var inc, exc []*glob.Pattern
	for _, g := range r.Include {
		inc = append(inc, glob.MustCompile(g, '/'))
	}
	for _, g := range r.Exclude {
		exc = append(exc, glob.MustCompile(g, '/'))
	}
	match := func(p string) bool {
		ok := len(inc) == 0
		for _, g := range inc {
			if g.Match(p) {
				ok = true
				break
			}
		}
		for _, g := range exc {
			if g.Match(p) {
				return false
			}
		}
		return ok
	}
	type node struct {
		id   *ua.NodeID
		path string
	}
	var out []found
	visited := map[string]bool{root.String(): true}
	level := []node{{id: root}}
	for depth := 1; depth <= r.Depth && len(level) > 0; depth++ {
		ids := make([]*ua.NodeID, len(level))
		for i, n := range level {
			ids[i] = n.id
		}
		kids, err := b.browse(ctx, ids)
		if err != nil {
			return nil, err
		}
		var next []node
		for i, refs := range kids {
			for _, ref := range refs {
				if ref.NodeID == nil || ref.NodeID.NodeID == nil || ref.BrowseName == nil || ref.NodeID.ServerIndex != 0 {
					continue
				}
				key := ref.NodeID.NodeID.String()
				if visited[key] {
					continue
				}
				visited[key] = true
				p := ref.BrowseName.Name
				if level[i].path != "" {
					p = level[i].path + "/" + p
				}
				if ref.NodeClass == ua.NodeClassVariable && match(p) {
					out = append(out, found{path: p, id: ref.NodeID.NodeID})
				}
				next = append(next, node{id: ref.NodeID.NodeID, path: p})
			}
		}
		level = next
	}
	return out, nil
}
