package opcua

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Paths of the fixed nodes.
const (
	PlantPath    = "Plant"
	SetpointPath = "Plant/Setpoint" // Double, readable and writable
	LimitPath    = "Plant/Limit"    // Double, read-only
	TypesPath    = "Plant/Types"    // one variable per special type, read-only
)

// node is one node of the Plant namespace. The model is built once and
// never changes shape; values change through atomic pointers, so the
// server's goroutines read them without a lock (gopcua's own namespaces
// read their maps unlocked, see LIBRARY-NOTES).
type node struct {
	path     string // the string identifier, e.g. Plant/Line01/V00001
	name     string // browse name
	class    ua.NodeClass
	kind     Kind
	line     int // index of a line variable, -1 otherwise
	seq      int // position in plant.vars
	writable bool
	parent   *node
	refType  uint32 // reference type from the parent
	children []*node

	value  atomic.Pointer[ua.DataValue]
	status atomic.Uint32 // forced by SetStatus, kept across ticks
	hidden atomic.Bool   // RemoveNode: absent from Browse, Read and new monitored items

	// Properties, methods and event sources (events.go):
	dt       *ua.NodeID // data type of a property (kind is unused then)
	rank     int32      // its value rank
	notifier byte       // EventNotifier of an object
}

// plant is the address space of the Plant namespace, shared by the
// generations of a server across restarts.
type plant struct {
	byPath map[string]*node
	root   *node
	vars   []*node // every variable: line variables first, in order, then the fixed ones
	lines  int     // number of line variables
}

func newPlant(tags, perLine int) *plant {
	p := &plant{byPath: map[string]*node{}}
	add := func(parent *node, name string, class ua.NodeClass, kind Kind, ref uint32) *node {
		n := &node{name: name, class: class, kind: kind, parent: parent, line: -1, refType: ref}
		if parent == nil {
			n.path = name
		} else {
			n.path = parent.path + "/" + name
			parent.children = append(parent.children, n)
		}
		p.byPath[n.path] = n
		return n
	}
	p.root = add(nil, PlantPath, ua.NodeClassObject, 0, id.Organizes)
	sp := add(p.root, "Setpoint", ua.NodeClassVariable, Double, id.HasComponent)
	sp.writable = true
	add(p.root, "Limit", ua.NodeClassVariable, Double, id.HasComponent)
	types := add(p.root, "Types", ua.NodeClassObject, 0, id.Organizes)
	for _, k := range []Kind{ByteString, LocalizedText, NodeID, StatusCode, DoubleArray, ExtensionObject} {
		add(types, k.String(), ua.NodeClassVariable, k, id.HasComponent)
	}
	addEvents(p, add)
	var line *node
	for i := range tags {
		if i%perLine == 0 {
			line = add(p.root, fmt.Sprintf("Line%02d", i/perLine+1), ua.NodeClassObject, 0, id.Organizes)
		}
		v := add(line, fmt.Sprintf("V%05d", i+1), ua.NodeClassVariable, KindOf(i), id.Organizes)
		v.line = i
		v.seq = len(p.vars)
		p.vars = append(p.vars, v)
	}
	p.lines = len(p.vars)
	for _, path := range []string{SetpointPath, LimitPath} {
		n := p.byPath[path]
		n.seq = len(p.vars)
		p.vars = append(p.vars, n)
	}
	for _, n := range types.children {
		n.seq = len(p.vars)
		p.vars = append(p.vars, n)
	}
	return p
}

// valueAt is the value of variable n at generation gen.
func (n *node) valueAt(gen uint64) any {
	switch {
	case n.line >= 0:
		return Value(n.line, gen)
	case n.path == SetpointPath:
		return 50.0
	case n.path == LimitPath:
		return 120.0
	}
	return fixedValue(n.kind, gen)
}

// set stores a new value with both timestamps at now.
func (n *node) set(va *ua.Variant, status ua.StatusCode, now time.Time) {
	dv := &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           va,
		SourceTimestamp: now,
		ServerTimestamp: now,
	}
	if status != ua.StatusOK {
		dv.EncodingMask |= ua.DataValueStatusCode
		dv.Status = status
	}
	n.value.Store(dv)
}

// nsView is the Plant namespace as one gopcua server generation sees it:
// the shared model under that generation's namespace index. It implements
// server.NameSpace.
type nsView struct {
	p   *plant
	uri string
	idx uint16
	g   *generation
}

var _ server.NameSpace = (*nsView)(nil)

func (v *nsView) Name() string       { return v.uri }
func (v *nsView) ID() uint16         { return v.idx }
func (v *nsView) SetID(i uint16)     { v.idx = i }
func (v *nsView) Root() *server.Node { return nil }

// AddNode is not supported: the simulator's address space has a fixed shape.
func (v *nsView) AddNode(n *server.Node) *server.Node { return n }

func (v *nsView) Objects() *server.Node { return v.serverNode(v.p.root) }

func (v *nsView) lookup(nid *ua.NodeID) *node {
	if nid == nil || nid.Namespace() != v.idx || nid.Type() != ua.NodeIDTypeString {
		return nil
	}
	n := v.p.byPath[nid.StringID()]
	if n == nil || n.hidden.Load() {
		return nil
	}
	return n
}

func (v *nsView) nodeID(n *node) *ua.NodeID { return ua.NewStringNodeID(v.idx, n.path) }

// browseNS is the namespace of a node's browse name: properties have the
// standard names of namespace 0 (EngineeringUnits, InputArguments), as on
// any server.
func (v *nsView) browseNS(n *node) uint16 {
	if n.refType == id.HasProperty {
		return 0
	}
	return v.idx
}

// Node returns a gopcua node for n, built on demand; the server uses it
// only to follow references (the Objects folder's reference to Plant).
func (v *nsView) Node(nid *ua.NodeID) *server.Node { return v.serverNode(v.lookup(nid)) }

func (v *nsView) serverNode(n *node) *server.Node {
	if n == nil {
		return nil
	}
	attrs := server.Attributes{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(n.class)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: v.idx, Name: n.name}),
		ua.AttributeIDDisplayName: server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: n.name}),
	}
	refs := server.References{{
		ReferenceTypeID: ua.NewNumericNodeID(0, id.HasTypeDefinition),
		IsForward:       true,
		NodeID:          typeDefinition(n),
		BrowseName:      &ua.QualifiedName{Name: "type"},
		DisplayName:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "type"},
		NodeClass:       ua.NodeClassObjectType,
		TypeDefinition:  ua.NewTwoByteExpandedNodeID(0),
	}}
	var val server.ValueFunc
	if n.class == ua.NodeClassVariable {
		val = func() *ua.DataValue { return n.value.Load() }
	}
	return server.NewNode(v.nodeID(n), attrs, refs, val)
}

func typeDefinition(n *node) *ua.ExpandedNodeID {
	switch {
	case n.class == ua.NodeClassVariable && n.refType == id.HasProperty:
		return ua.NewNumericExpandedNodeID(0, id.PropertyType)
	case n.class == ua.NodeClassVariable:
		return ua.NewNumericExpandedNodeID(0, id.BaseDataVariableType)
	case n.path == AlarmPath:
		return ua.NewNumericExpandedNodeID(0, id.AlarmConditionType)
	case n.class == ua.NodeClassMethod:
		return ua.NewTwoByteExpandedNodeID(0)
	}
	return ua.NewNumericExpandedNodeID(0, id.FolderType)
}

func dv(v any) *ua.DataValue {
	return &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)}
}

func badAttr(code ua.StatusCode) *ua.DataValue {
	return &ua.DataValue{EncodingMask: ua.DataValueStatusCode | ua.DataValueServerTimestamp, Status: code, ServerTimestamp: time.Now()}
}

// Access levels of the simulator's variables.
const (
	readOnly  = byte(ua.AccessLevelTypeCurrentRead)
	readWrite = byte(ua.AccessLevelTypeCurrentRead | ua.AccessLevelTypeCurrentWrite)
)

func (v *nsView) Attribute(nid *ua.NodeID, attr ua.AttributeID) *ua.DataValue {
	n := v.lookup(nid)
	if n == nil {
		return badAttr(ua.StatusBadNodeIDUnknown)
	}
	variable := n.class == ua.NodeClassVariable
	switch attr {
	case ua.AttributeIDNodeID:
		return dv(v.nodeID(n))
	case ua.AttributeIDNodeClass:
		return dv(int32(n.class))
	case ua.AttributeIDBrowseName:
		return dv(&ua.QualifiedName{NamespaceIndex: v.browseNS(n), Name: n.name})
	case ua.AttributeIDDisplayName:
		return dv(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: n.name})
	case ua.AttributeIDDescription:
		return dv(&ua.LocalizedText{})
	case ua.AttributeIDWriteMask, ua.AttributeIDUserWriteMask:
		return dv(uint32(0))
	case ua.AttributeIDEventNotifier:
		if n.class == ua.NodeClassObject {
			return dv(n.notifier)
		}
	case ua.AttributeIDValue:
		if variable {
			return n.value.Load()
		}
	case ua.AttributeIDDataType:
		if variable && n.dt != nil {
			return dv(n.dt)
		}
		if variable {
			return dv(n.kind.DataType())
		}
	case ua.AttributeIDValueRank:
		if variable && n.dt != nil {
			return dv(n.rank)
		}
		if variable {
			return dv(kindInfo[n.kind].rank)
		}
	case ua.AttributeIDExecutable, ua.AttributeIDUserExecutable:
		if n.class == ua.NodeClassMethod {
			return dv(true)
		}
	case ua.AttributeIDArrayDimensions:
		if variable {
			if n.dt != nil && n.rank == 1 || n.dt == nil && kindInfo[n.kind].rank == 1 {
				return dv([]uint32{0})
			}
			return dv([]uint32{})
		}
	case ua.AttributeIDAccessLevel, ua.AttributeIDUserAccessLevel:
		if variable {
			if n.writable {
				return dv(readWrite)
			}
			return dv(readOnly)
		}
	case ua.AttributeIDMinimumSamplingInterval:
		if variable {
			return dv(float64(0))
		}
	case ua.AttributeIDHistorizing:
		if variable {
			return dv(false)
		}
	}
	return badAttr(ua.StatusBadAttributeIDInvalid)
}

// SetAttribute is the Write service: only the Value of a writable variable,
// with a value of the variable's type.
func (v *nsView) SetAttribute(nid *ua.NodeID, attr ua.AttributeID, val *ua.DataValue) ua.StatusCode {
	n := v.lookup(nid)
	switch {
	case n == nil:
		return ua.StatusBadNodeIDUnknown
	case attr != ua.AttributeIDValue || n.class != ua.NodeClassVariable:
		return ua.StatusBadNotWritable
	case !n.writable:
		return ua.StatusBadNotWritable
	case val == nil || val.Value == nil || val.Value.Type() != n.kind.TypeID():
		return ua.StatusBadTypeMismatch
	}
	if v.g == nil || v.g.s == nil {
		return ua.StatusBadInternalError
	}
	v.g.s.store(n, val.Value, ua.StatusOK)
	return ua.StatusOK
}

// Browse answers one browse description: the hierarchical references of a
// node (forward to children, inverse to the parent) and its type
// definition, filtered as asked. The server has no continuation points, so
// every reference comes in one answer.
func (v *nsView) Browse(bd *ua.BrowseDescription) *ua.BrowseResult {
	n := v.lookup(bd.NodeID)
	if n == nil {
		return &ua.BrowseResult{StatusCode: ua.StatusBadNodeIDUnknown}
	}
	var refs []*ua.ReferenceDescription
	add := func(ref uint32, forward bool, target *ua.ExpandedNodeID, name string, ns uint16, class ua.NodeClass, td *ua.ExpandedNodeID) {
		if !directionMatches(bd.BrowseDirection, forward) || !refMatches(bd.ReferenceTypeID, bd.IncludeSubtypes, ref) {
			return
		}
		if bd.NodeClassMask != 0 && bd.NodeClassMask&uint32(class) == 0 {
			return
		}
		refs = append(refs, &ua.ReferenceDescription{
			ReferenceTypeID: ua.NewNumericNodeID(0, ref),
			IsForward:       forward,
			NodeID:          target,
			BrowseName:      &ua.QualifiedName{NamespaceIndex: ns, Name: name},
			DisplayName:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: name},
			NodeClass:       class,
			TypeDefinition:  td,
		})
	}
	if n.parent == nil {
		add(id.Organizes, false, ua.NewNumericExpandedNodeID(0, id.ObjectsFolder), "Objects", 0, ua.NodeClassObject, ua.NewNumericExpandedNodeID(0, id.FolderType))
	} else {
		add(n.refType, false, ua.NewExpandedNodeID(v.nodeID(n.parent), "", 0), n.parent.name, v.idx, n.parent.class, typeDefinition(n.parent))
	}
	if n.class == ua.NodeClassVariable {
		add(id.HasTypeDefinition, true, typeDefinition(n), "BaseDataVariableType", 0, ua.NodeClassVariableType, ua.NewTwoByteExpandedNodeID(0))
	} else {
		add(id.HasTypeDefinition, true, typeDefinition(n), "FolderType", 0, ua.NodeClassObjectType, ua.NewTwoByteExpandedNodeID(0))
	}
	for _, c := range n.children {
		if c.hidden.Load() {
			continue
		}
		add(c.refType, true, ua.NewExpandedNodeID(v.nodeID(c), "", 0), c.name, v.browseNS(c), c.class, typeDefinition(c))
	}
	return &ua.BrowseResult{StatusCode: ua.StatusGood, References: refs}
}

func directionMatches(d ua.BrowseDirection, forward bool) bool {
	switch d {
	case ua.BrowseDirectionBoth:
		return true
	case ua.BrowseDirectionInverse:
		return !forward
	}
	return forward
}

// refMatches reports whether reference type ref is (a subtype of) the
// requested one, for the few types the simulator uses.
func refMatches(req *ua.NodeID, subtypes bool, ref uint32) bool {
	if req == nil || (req.Namespace() == 0 && req.IntID() == 0) {
		return true
	}
	if req.Namespace() != 0 {
		return false
	}
	want := req.IntID()
	if want == ref {
		return true
	}
	if !subtypes {
		return false
	}
	switch want {
	case id.References:
		return true
	case id.HierarchicalReferences:
		return ref == id.Organizes || ref == id.HasComponent || ref == id.HasProperty
	case id.Aggregates:
		return ref == id.HasComponent || ref == id.HasProperty
	case id.NonHierarchicalReferences:
		return ref == id.HasTypeDefinition
	}
	return false
}

// splitPath accepts a node path or a NodeId string with an s= identifier.
func splitPath(s string) string {
	if i := strings.Index(s, "s="); i >= 0 && (i == 0 || s[i-1] == ';') {
		return s[i+2:]
	}
	return s
}
