package opcua

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
)

// ---- engineering units

// serverUnits sets the unit of every item the config gave none from its
// EngineeringUnits property (an EUInformation's display name). It is a
// convenience: a server that cannot say is logged once and the tags go on
// without a unit.
func (s *session) serverUnits(ctx context.Context, items []*item) {
	var todo []*item
	for _, it := range items {
		if !it.unitOK {
			todo = append(todo, it)
		}
	}
	if len(todo) == 0 {
		return
	}
	props, err := s.properties(ctx, todo, "EngineeringUnits")
	if err == nil {
		var vals []*ua.DataValue
		vals, err = s.readValues(ctx, props)
		for i, dv := range vals {
			if dv == nil || dv.Value == nil || props[i] == nil {
				continue
			}
			if eo, ok := dv.Value.Value().(*ua.ExtensionObject); ok && eo != nil {
				if eu, ok := eo.Value.(*ua.EUInformation); ok && eu.DisplayName != nil {
					todo[i].unit = eu.DisplayName.Text
				}
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		s.o.logBurst("engineering units not read", slog.String("error", err.Error()))
	}
}

// ---- access levels

// serverAccess reads each item's UserAccessLevel (what this session's user
// may do with the node), so the page can say which tags take writes. A
// server that cannot say is logged once; its tags are then "maybe".
func (s *session) serverAccess(ctx context.Context, items []*item) {
	nodes := make([]*ua.NodeID, len(items))
	for i, it := range items {
		nodes[i] = it.node
	}
	vals, err := s.readAttr(ctx, nodes, ua.AttributeIDUserAccessLevel)
	for i, dv := range vals {
		if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
			continue
		}
		if b, ok := dv.Value.Value().(uint8); ok {
			items[i].access, items[i].accessOK = b, true
		}
	}
	if err != nil && ctx.Err() == nil {
		s.o.logBurst("access levels not read", slog.String("error", err.Error()))
	}
}

// properties returns, per item, the NodeId of its property with browse
// name name (namespace 0), or nil; in Browse calls of at most
// MaxNodesPerBrowse.
func (s *session) properties(ctx context.Context, items []*item, name string) ([]*ua.NodeID, error) {
	out := make([]*ua.NodeID, len(items))
	per := chunk(s.limits.maxNodesPerBrowse, 100)
	for start := 0; start < len(items); start += per {
		part := items[start:min(start+per, len(items))]
		req := &ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, RequestedMaxReferencesPerNode: 100}
		for _, it := range part {
			req.NodesToBrowse = append(req.NodesToBrowse, &ua.BrowseDescription{
				NodeID: it.node, BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HasProperty),
				NodeClassMask: uint32(ua.NodeClassVariable), ResultMask: uint32(ua.BrowseResultMaskBrowseName),
			})
		}
		res, err := call[*ua.BrowseResponse](ctx, s, req)
		if err != nil {
			return nil, fmt.Errorf("browse properties: %w", err)
		}
		for k, r := range res.Results {
			if k >= len(part) || r == nil {
				break
			}
			for _, ref := range r.References {
				if ref.BrowseName != nil && ref.BrowseName.NamespaceIndex == 0 && ref.BrowseName.Name == name && ref.NodeID != nil && ref.NodeID.ServerIndex == 0 {
					out[start+k] = ref.NodeID.NodeID
					break
				}
			}
		}
	}
	return out, nil
}

// readValues reads the Value of each node (nil entries are skipped and
// come back nil) in calls of at most MaxNodesPerRead.
func (s *session) readValues(ctx context.Context, nodes []*ua.NodeID) ([]*ua.DataValue, error) {
	return s.readAttr(ctx, nodes, ua.AttributeIDValue)
}

// readAttr reads attribute attr of every node (nil ones are skipped), in
// Read calls of at most MaxNodesPerRead.
func (s *session) readAttr(ctx context.Context, nodes []*ua.NodeID, attr ua.AttributeID) ([]*ua.DataValue, error) {
	out := make([]*ua.DataValue, len(nodes))
	var idx []int
	for i, n := range nodes {
		if n != nil {
			idx = append(idx, i)
		}
	}
	per := chunk(s.limits.maxNodesPerRead, s.o.Poll.MaxNodesPerRead)
	for start := 0; start < len(idx); start += per {
		part := idx[start:min(start+per, len(idx))]
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for _, i := range part {
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: nodes[i], AttributeID: attr, DataEncoding: &ua.QualifiedName{}})
		}
		res, err := call[*ua.ReadResponse](ctx, s, req)
		if err != nil {
			return nil, fmt.Errorf("read attribute %d: %w", attr, err)
		}
		for k, i := range part {
			if k < len(res.Results) {
				out[i] = res.Results[k]
			}
		}
	}
	return out, nil
}

// ---- methods

// method is a configured method as resolved in one session.
type method struct {
	name     string
	obj, id  *ua.NodeID
	err      error // why it did not resolve
	once     sync.Once
	in       []*ua.Argument
	inErr    error
	outNames []string
}

// resolveMethods finds every configured method's object and method node.
func (s *session) resolveMethods(ctx context.Context) (map[string]*method, error) {
	if len(s.o.Methods) == 0 {
		return nil, nil
	}
	out := make(map[string]*method, len(s.o.Methods))
	b := &browser{s: s, children: map[string][]*ua.ReferenceDescription{}}
	ns := s.c.Namespaces()
	for _, mc := range s.o.Methods {
		m := &method{name: mc.Name}
		out[mc.Name] = m
		if mc.Path != "" {
			steps, _ := ParseBrowsePath(mc.Path)
			obj, code, err := b.follow(ctx, ua.NewNumericNodeID(0, id.ObjectsFolder), steps[:len(steps)-1])
			if err != nil {
				return nil, err
			}
			if code == ua.StatusOK {
				m.obj = obj
				m.id, code, err = b.followMethod(ctx, obj, steps[len(steps)-1])
				if err != nil {
					return nil, err
				}
			}
			if code != ua.StatusOK {
				m.err = &StatusError{Op: "find method", Node: mc.Path, Tag: s.o.device + "/" + mc.Name, Code: code}
			}
			continue
		}
		var errs []error
		for _, x := range []struct {
			ref string
			to  **ua.NodeID
		}{{mc.Object, &m.obj}, {mc.ID, &m.id}} {
			r, err := ParseNodeRef(x.ref)
			if err == nil {
				*x.to, err = r.Resolve(ns)
			}
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			m.err = fmt.Errorf("method %s/%s: %w", s.o.device, mc.Name, err)
		}
	}
	return out, nil
}

// followMethod finds a method child of obj by browse name (follow
// browses Objects and Variables only).
func (b *browser) followMethod(ctx context.Context, obj *ua.NodeID, st BrowseStep) (*ua.NodeID, ua.StatusCode, error) {
	res, err := call[*ua.BrowseResponse](ctx, b.s, &ua.BrowseRequest{
		View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: obj, BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HasComponent),
			IncludeSubtypes: true, NodeClassMask: uint32(ua.NodeClassMethod), ResultMask: uint32(ua.BrowseResultMaskAll),
		}},
	})
	if err != nil {
		return nil, 0, err
	}
	for _, r := range res.Results {
		for _, ref := range b.rest(ctx, r) {
			if ref.BrowseName != nil && ref.BrowseName.Name == st.Name && ref.NodeID != nil && (st.NS < 0 || int(ref.BrowseName.NamespaceIndex) == st.NS) {
				return ref.NodeID.NodeID, ua.StatusOK, nil
			}
		}
	}
	return nil, ua.StatusBadNoMatch, nil
}

// arguments reads a method's InputArguments (and the names of its
// outputs) once per session.
func (s *session) arguments(ctx context.Context, m *method) ([]*ua.Argument, error) {
	m.once.Do(func() {
		it := []*item{{node: m.id}}
		in, err := s.properties(ctx, it, "InputArguments")
		if err != nil {
			m.inErr = err
			return
		}
		outp, err := s.properties(ctx, it, "OutputArguments")
		if err != nil {
			m.inErr = err
			return
		}
		vals, err := s.readValues(ctx, []*ua.NodeID{in[0], outp[0]})
		if err != nil {
			m.inErr = err
			return
		}
		args := func(dv *ua.DataValue) []*ua.Argument {
			var out []*ua.Argument
			if dv == nil || dv.Value == nil {
				return nil
			}
			eos, _ := dv.Value.Value().([]*ua.ExtensionObject)
			for _, eo := range eos {
				if a, ok := eo.Value.(*ua.Argument); ok {
					out = append(out, a)
				}
			}
			return out
		}
		m.in = args(vals[0])
		for _, a := range args(vals[1]) {
			m.outNames = append(m.outNames, a.Name)
		}
	})
	return m.in, m.inErr
}

// callMethod converts v to the method's input arguments, calls it, and
// emits its output arguments as one record tagged with the method's name.
// A Bad StatusCode is a *StatusError (the device said no: failed); an
// argument that cannot be converted is refused before anything is sent.
func (s *session) callMethod(ctx context.Context, m *method, v bus.Value) error {
	tag := s.o.device + "/" + m.name
	if m.err != nil {
		return m.err
	}
	decl, err := s.arguments(ctx, m)
	if err != nil {
		return fmt.Errorf("call %s: %w", tag, err)
	}
	vals, err := methodArgs(decl, v)
	if err != nil {
		return fmt.Errorf("call %s: %w: %w", tag, command.ErrRefused, err)
	}
	in := make([]*ua.Variant, len(decl))
	for i, a := range decl {
		if in[i], err = toVariant(a.DataType, a.ValueRank, vals[i]); err != nil {
			return fmt.Errorf("call %s: argument %s: %w: %w", tag, a.Name, command.ErrRefused, err)
		}
	}
	res, err := call[*ua.CallResponse](ctx, s, &ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{ObjectID: m.obj, MethodID: m.id, InputArguments: in}}})
	if err != nil {
		return fmt.Errorf("call %s: %w", tag, err)
	}
	if len(res.Results) != 1 || res.Results[0] == nil {
		return fmt.Errorf("call %s: %d results for one call", tag, len(res.Results))
	}
	r := res.Results[0]
	if Quality(r.StatusCode) == bus.Bad {
		se := &StatusError{Op: "call", Node: m.id.String(), Tag: tag, Code: r.StatusCode}
		for i, c := range r.InputArgumentResults {
			if c != ua.StatusOK && i < len(decl) {
				return fmt.Errorf("%w (argument %s: %s)", se, decl[i].Name, statusName(c))
			}
		}
		return se
	}
	outs := make([]any, len(r.OutputArguments))
	named := map[string]any{}
	for i, o := range r.OutputArguments {
		if o != nil {
			outs[i] = jsonable(o.Value())
		}
		if i < len(m.outNames) && m.outNames[i] != "" {
			named[m.outNames[i]] = outs[i]
		}
	}
	b, _ := json.Marshal(outs)
	now := time.Now().UnixNano()
	attrs := map[string]string{"status": statusName(r.StatusCode)}
	if len(named) > 0 {
		nb, _ := json.Marshal(named)
		attrs["outputs"] = string(nb)
	}
	batch := bus.Batch{Records: []bus.Record{{
		Device: s.o.device, Tag: m.name, Value: bus.String(string(b)), Quality: Quality(r.StatusCode), Status: uint32(r.StatusCode),
		SourceTime: now, IngestTime: now, Attrs: attrs,
	}}}
	// Emitted beside the call, not in it: the command's caller must not
	// wait for the bus (with a blocking bus it may be its own reader).
	go func() {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.o.env.Emit(ectx, &batch); err != nil {
			s.o.env.Error(fmt.Errorf("outputs of %s: %w", tag, err))
		}
	}()
	return nil
}

// methodArgs reads a command's value as a method's input arguments: a
// JSON array string with one element per argument, or a plain value for
// a method of one argument; a method without arguments ignores it.
func methodArgs(decl []*ua.Argument, v bus.Value) ([]bus.Value, error) {
	if len(decl) == 0 {
		return nil, nil
	}
	names := make([]string, len(decl))
	for i, a := range decl {
		names[i] = a.Name
	}
	if v.Kind == bus.KindString && strings.HasPrefix(strings.TrimSpace(v.Str()), "[") {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(v.Str()), &raw); err != nil {
			return nil, fmt.Errorf("%q is not a JSON array of the arguments (%s): %v", v.Str(), strings.Join(names, ", "), err)
		}
		if len(raw) != len(decl) {
			return nil, fmt.Errorf("the method takes %d argument(s) (%s), got %d", len(decl), strings.Join(names, ", "), len(raw))
		}
		out := make([]bus.Value, len(raw))
		for i, r := range raw {
			if t := strings.TrimSpace(string(r)); strings.HasPrefix(t, "[") {
				out[i] = bus.String(t) // an array argument, as an array node takes it
				continue
			}
			x, err := command.Value(r)
			if err != nil {
				return nil, fmt.Errorf("argument %s: %v", names[i], err)
			}
			out[i] = x
		}
		return out, nil
	}
	if len(decl) != 1 {
		return nil, fmt.Errorf("the method takes %d arguments (%s): give a JSON array string such as \"[1, 2]\"", len(decl), strings.Join(names, ", "))
	}
	return []bus.Value{v}, nil
}

// ---- events and conditions

// The select clauses every event item asks for, in this order; the
// configured extra fields follow.
var eventSelect = []struct {
	typ  uint32
	path string
	attr ua.AttributeID
}{
	{id.BaseEventType, "EventId", ua.AttributeIDValue},
	{id.BaseEventType, "EventType", ua.AttributeIDValue},
	{id.BaseEventType, "SourceNode", ua.AttributeIDValue},
	{id.BaseEventType, "SourceName", ua.AttributeIDValue},
	{id.BaseEventType, "Time", ua.AttributeIDValue},
	{id.BaseEventType, "Message", ua.AttributeIDValue},
	{id.BaseEventType, "Severity", ua.AttributeIDValue},
	{id.ConditionType, "", ua.AttributeIDNodeID}, // the ConditionId
	{id.ConditionType, "ConditionName", ua.AttributeIDValue},
	{id.AlarmConditionType, "ActiveState/Id", ua.AttributeIDValue},
	{id.AcknowledgeableConditionType, "AckedState/Id", ua.AttributeIDValue},
	{id.AcknowledgeableConditionType, "ConfirmedState/Id", ua.AttributeIDValue},
	{id.ConditionType, "Retain", ua.AttributeIDValue},
}

const (
	evEventID = iota
	evType
	evSourceNode
	evSourceName
	evTime
	evMessage
	evSeverity
	evConditionID
	evConditionName
	evActive
	evAcked
	evConfirmed
	evRetain
	evFixed
)

// eventHandleBase is the first client handle of event items; data items
// count up from 1 and never reach it.
const eventHandleBase = 1 << 31

func operand(typ uint32, path string, attr ua.AttributeID) *ua.SimpleAttributeOperand {
	var bp []*ua.QualifiedName
	if path != "" {
		for _, n := range strings.Split(path, "/") {
			bp = append(bp, &ua.QualifiedName{Name: n})
		}
	}
	return &ua.SimpleAttributeOperand{TypeDefinitionID: ua.NewNumericNodeID(0, typ), BrowsePath: bp, AttributeID: attr}
}

// eventFilter builds the select and where clauses of one events entry.
func eventFilter(e EventConfig, ns []string) (*ua.EventFilter, error) {
	f := &ua.EventFilter{}
	for _, s := range eventSelect {
		f.SelectClauses = append(f.SelectClauses, operand(s.typ, s.path, s.attr))
	}
	for _, x := range e.Fields {
		f.SelectClauses = append(f.SelectClauses, operand(id.BaseEventType, x, ua.AttributeIDValue))
	}
	// The where clause is a tree in element order: the root first, an
	// element's operands after it.
	type fnode struct {
		op       ua.FilterOperator
		operands []*ua.ExtensionObject
		kids     []*fnode
	}
	var terms []*fnode
	var types *fnode
	for _, t := range e.Types {
		r, err := ParseNodeRef(t)
		if err != nil {
			return nil, err
		}
		n, err := r.Resolve(ns)
		if err != nil {
			return nil, err
		}
		leaf := &fnode{op: ua.FilterOperatorOfType, operands: []*ua.ExtensionObject{ua.NewExtensionObject(&ua.LiteralOperand{Value: ua.MustVariant(n)})}}
		if types == nil {
			types = leaf
		} else {
			types = &fnode{op: ua.FilterOperatorOr, kids: []*fnode{leaf, types}}
		}
	}
	if types != nil {
		terms = append(terms, types)
	}
	if e.MinSeverity > 0 {
		terms = append(terms, &fnode{op: ua.FilterOperatorGreaterThanOrEqual, operands: []*ua.ExtensionObject{
			ua.NewExtensionObject(operand(id.BaseEventType, "Severity", ua.AttributeIDValue)),
			ua.NewExtensionObject(&ua.LiteralOperand{Value: ua.MustVariant(e.MinSeverity)}),
		}})
	}
	var root *fnode
	switch len(terms) {
	case 0:
		f.WhereClause = &ua.ContentFilter{Elements: []*ua.ContentFilterElement{}}
		return f, nil
	case 1:
		root = terms[0]
	default:
		root = &fnode{op: ua.FilterOperatorAnd, kids: terms}
	}
	var els []*ua.ContentFilterElement
	var flatten func(n *fnode) uint32
	flatten = func(n *fnode) uint32 {
		i := len(els)
		els = append(els, nil)
		ops := n.operands
		for _, k := range n.kids {
			ops = append(ops, ua.NewExtensionObject(&ua.ElementOperand{Index: flatten(k)}))
		}
		els[i] = &ua.ContentFilterElement{FilterOperator: n.op, FilterOperands: ops}
		return uint32(i)
	}
	flatten(root)
	for _, el := range els {
		for _, o := range el.FilterOperands {
			o.UpdateMask()
		}
	}
	f.WhereClause = &ua.ContentFilter{Elements: els}
	return f, nil
}

// createEventItems creates the configured event items in sub.
func (s *session) createEventItems(ctx context.Context, sub *subscription) error {
	if len(s.o.Events) == 0 {
		return nil
	}
	ns := s.c.Namespaces()
	req := &ua.CreateMonitoredItemsRequest{SubscriptionID: sub.id, TimestampsToReturn: ua.TimestampsToReturnNeither}
	for i, e := range s.o.Events {
		node := ua.NewNumericNodeID(0, id.Server)
		if e.Node != "" {
			r, _ := ParseNodeRef(e.Node)
			n, err := r.Resolve(ns)
			if err != nil {
				s.o.logBurst("event notifier does not resolve", slog.String("node", e.Node), slog.String("error", err.Error()))
				continue
			}
			node = n
		}
		f, err := eventFilter(e, ns)
		if err != nil {
			s.o.logBurst("event filter does not resolve", slog.String("node", e.Node), slog.String("error", err.Error()))
			continue
		}
		fo := ua.NewExtensionObject(f)
		fo.UpdateMask()
		req.ItemsToCreate = append(req.ItemsToCreate, &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  &ua.ReadValueID{NodeID: node, AttributeID: ua.AttributeIDEventNotifier, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode: ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{
				ClientHandle: eventHandleBase + uint32(i), SamplingInterval: 0, QueueSize: 1000, DiscardOldest: true, Filter: fo,
			},
		})
	}
	if len(req.ItemsToCreate) == 0 {
		return nil
	}
	res, err := call[*ua.CreateMonitoredItemsResponse](ctx, s, req)
	if err != nil {
		return fmt.Errorf("create event items: %w", err)
	}
	for i, r := range res.Results {
		if r == nil || Quality(r.StatusCode) == bus.Bad {
			code := ua.StatusBadInternalError
			if r != nil {
				code = r.StatusCode
			}
			s.o.logBurst("event item refused", slog.String("node", req.ItemsToCreate[i].ItemToMonitor.NodeID.String()), slog.String("status", statusName(code)))
			continue
		}
		sub.created++
	}
	sub.events = true
	return nil
}

// condition is what Acknowledge and Confirm need of a condition's latest
// event.
type condition struct {
	id      *ua.NodeID
	eventID []byte
}

// eventRecord turns one event into a record and remembers a condition's
// latest event for acknowledgement.
func (s *session) eventRecord(fl *ua.EventFieldList, ingest int64) (bus.Record, bool) {
	i := int(fl.ClientHandle - eventHandleBase)
	if i < 0 || i >= len(s.o.Events) {
		return bus.Record{}, false
	}
	e := s.o.Events[i]
	f := func(k int) any {
		if k < len(fl.EventFields) && fl.EventFields[k] != nil {
			return fl.EventFields[k].Value()
		}
		return nil
	}
	attrs := map[string]string{}
	str := func(k int) string {
		switch x := f(k).(type) {
		case nil:
			return ""
		case string:
			return x
		case *ua.LocalizedText:
			if x == nil {
				return ""
			}
			return x.Text
		case *ua.NodeID:
			if x == nil {
				return ""
			}
			return x.String()
		case []byte:
			return hex.EncodeToString(x)
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano)
		default:
			return fmt.Sprint(x)
		}
	}
	typeName := "Event"
	if t, ok := f(evType).(*ua.NodeID); ok && t != nil {
		attrs["event_type"] = t.String()
		typeName = t.String()
		if t.Namespace() == 0 && t.Type() == ua.NodeIDTypeNumeric {
			if n := id.Name(t.IntID()); n != "" {
				typeName = n
			}
		}
	}
	for _, kv := range []struct {
		k   string
		idx int
	}{{"event_id", evEventID}, {"source_node", evSourceNode}, {"severity", evSeverity}, {"condition_id", evConditionID},
		{"condition_name", evConditionName}, {"active", evActive}, {"acked", evAcked}, {"confirmed", evConfirmed}, {"retain", evRetain}} {
		if v := str(kv.idx); v != "" {
			attrs[kv.k] = v
		}
	}
	for j, name := range e.Fields {
		if v := str(evFixed + j); v != "" {
			attrs[name] = v
		}
	}
	source := str(evSourceName)
	if source == "" {
		source = attrs["source_node"]
	}
	// A condition is named by its ConditionName, so two alarms of one type
	// on one source stay apart (and can be acknowledged apart); a plain
	// event by its type.
	tag := e.Prefix + source + "/" + typeName
	cid, _ := f(evConditionID).(*ua.NodeID)
	if cid != nil {
		if n := str(evConditionName); n != "" {
			tag = e.Prefix + source + "/" + n
		}
		if eid, ok := f(evEventID).([]byte); ok {
			s.o.conds.Store(tag, condition{id: cid, eventID: eid})
		}
	}
	r := bus.Record{Device: s.o.device, Tag: tag, Value: bus.String(str(evMessage)), Quality: bus.Good, IngestTime: ingest, SourceTime: ingest, Attrs: attrs}
	if t, ok := f(evTime).(time.Time); ok && !t.IsZero() {
		r.SourceTime = t.UnixNano()
	}
	return r, true
}

// Acknowledge and Confirm are write-back on <condition tag>/acknowledge
// and <condition tag>/confirm; the value is the comment.
const (
	ackSuffix     = "/acknowledge"
	confirmSuffix = "/confirm"
)

// conditionCommand calls Acknowledge or Confirm on the condition of tag
// for its latest event.
func (o *OPCUA) conditionCommand(ctx context.Context, s *session, tag string, v bus.Value) (bool, error) {
	var base string
	var mid uint32
	switch {
	case strings.HasSuffix(tag, ackSuffix):
		base, mid = strings.TrimSuffix(tag, ackSuffix), id.AcknowledgeableConditionType_Acknowledge
	case strings.HasSuffix(tag, confirmSuffix):
		base, mid = strings.TrimSuffix(tag, confirmSuffix), id.AcknowledgeableConditionType_Confirm
	default:
		return false, nil
	}
	c, ok := o.conds.Load(base)
	if !ok {
		return true, fmt.Errorf("%w: %s/%s: no event of a condition %q seen yet", connectors.ErrUnknownTag, o.device, tag, base)
	}
	cond := c.(condition)
	comment := ""
	if v.Kind == bus.KindString {
		comment = v.Str()
	} else if v.Kind != bus.KindNull {
		comment = strconv.Quote(fmt.Sprint(v))
	}
	res, err := call[*ua.CallResponse](ctx, s, &ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{
		ObjectID: cond.id, MethodID: ua.NewNumericNodeID(0, mid),
		InputArguments: []*ua.Variant{ua.MustVariant(cond.eventID), ua.MustVariant(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: comment})},
	}}})
	op := strings.TrimPrefix(ackSuffix, "/")
	if mid == id.AcknowledgeableConditionType_Confirm {
		op = strings.TrimPrefix(confirmSuffix, "/")
	}
	if err != nil {
		return true, fmt.Errorf("%s %s/%s: %w", op, o.device, base, err)
	}
	if len(res.Results) != 1 || res.Results[0] == nil {
		return true, fmt.Errorf("%s %s/%s: %d results for one call", op, o.device, base, len(res.Results))
	}
	if code := res.Results[0].StatusCode; Quality(code) == bus.Bad {
		return true, &StatusError{Op: op, Node: cond.id.String(), Tag: o.device + "/" + base, Code: code}
	}
	return true, nil
}
