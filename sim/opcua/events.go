package opcua

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// gopcua's server answers Call and TransferSubscriptions "unsupported"
// and has no event model (no EventNotifier monitored items, no
// conditions), so the simulator implements these itself, for the few
// nodes it has:
//
//	Plant/Setpoint/EngineeringUnits  EUInformation "°C" (also on Plant/Limit)
//	Plant/Boiler                     an event source (EventNotifier 1)
//	Plant/Boiler/HighTemp            an AlarmConditionType condition
//	Plant/Mixer/Mix                  a method: Mix(Ratio Double, Seconds UInt16) → (Total Double, Batch String)
//
// Events are delivered to monitored items on the Server object (every
// event), on Plant (the area) or on Plant/Boiler, with the item's select
// clauses and where clause (OfType, the comparisons, And, Or, Not).

// Paths of the event, condition and method nodes.
const (
	BoilerPath = "Plant/Boiler"
	AlarmPath  = "Plant/Boiler/HighTemp"
	MixerPath  = "Plant/Mixer"
	MixPath    = "Plant/Mixer/Mix"
	// Unit is the EngineeringUnits display name of Setpoint and Limit.
	Unit = "°C"
)

// Method ids of AcknowledgeableConditionType, as a client calls them.
const (
	AcknowledgeMethod = id.AcknowledgeableConditionType_Acknowledge
	ConfirmMethod     = id.AcknowledgeableConditionType_Confirm
)

func addEvents(p *plant, add func(parent *node, name string, class ua.NodeClass, kind Kind, ref uint32) *node) {
	prop := func(parent *node, name string, dt uint32, rank int32, v any) {
		n := add(parent, name, ua.NodeClassVariable, 0, id.HasProperty)
		n.dt, n.rank = ua.NewNumericNodeID(0, dt), rank
		n.value.Store(&ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)})
	}
	eu := ua.NewExtensionObject(&ua.EUInformation{
		NamespaceURI: "http://www.opcfoundation.org/UA/units/un/cefact", UnitID: 4408652, // CEL
		DisplayName: &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: Unit},
		Description: &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "degree Celsius"},
	})
	for _, path := range []string{SetpointPath, LimitPath} {
		prop(p.byPath[path], "EngineeringUnits", id.EUInformation, -1, eu)
	}
	p.root.notifier = 1
	boiler := add(p.root, "Boiler", ua.NodeClassObject, 0, id.Organizes)
	boiler.notifier = 1
	add(boiler, "HighTemp", ua.NodeClassObject, 0, id.HasComponent)
	mixer := add(p.root, "Mixer", ua.NodeClassObject, 0, id.Organizes)
	mix := add(mixer, "Mix", ua.NodeClassMethod, 0, id.HasComponent)
	arg := func(name string, dt uint32) *ua.ExtensionObject {
		return ua.NewExtensionObject(&ua.Argument{Name: name, DataType: ua.NewNumericNodeID(0, dt), ValueRank: -1, ArrayDimensions: []uint32{},
			Description: &ua.LocalizedText{}})
	}
	prop(mix, "InputArguments", id.Argument, 1, []*ua.ExtensionObject{arg("Ratio", id.Double), arg("Seconds", id.UInt16)})
	prop(mix, "OutputArguments", id.Argument, 1, []*ua.ExtensionObject{arg("Total", id.Double), arg("Batch", id.String)})
}

// Event is one event FireEvent sends.
type Event struct {
	// Source is the path of the node it comes from; default Plant/Boiler.
	Source string
	// Type is the event type's numeric NodeId in namespace 0; default
	// BaseEventType (2041).
	Type     uint32
	Severity uint16
	Message  string
}

// AlarmState is the state of the Plant/Boiler/HighTemp condition.
type AlarmState struct {
	Active, Acked, Confirmed bool
	EventID                  []byte // of its latest event, which Acknowledge and Confirm must name
	Comment                  string // of the latest Acknowledge or Confirm
	Severity                 uint16
	Message                  string
}

// event is one event as the select clauses read it.
type event struct {
	id     []byte
	typ    uint32
	source *node
	time   time.Time
	msg    string
	sev    uint16
	cond   *AlarmState // a condition's state, nil for a plain event
}

// evState is the simulator's event and method state, kept across restarts.
type evState struct {
	mu     sync.Mutex
	alarm  AlarmState
	n      uint64 // events fired, for their ids
	calls  uint64
	events uint64
}

// evItem is one event monitored item.
type evItem struct {
	id, sub, handle uint32
	notifier        *node // nil: the Server object, every event
	sel             []*ua.SimpleAttributeOperand
	where           []*ua.ContentFilterElement
}

// evItems are the event monitored items of one generation.
type evItems struct {
	mu    sync.Mutex
	items map[uint32]*evItem
}

// event item ids start high so they never meet gopcua's own.
const evItemBase = 1 << 30

// FireEvent sends an event to the event monitored items that cover its
// source.
func (s *Server) FireEvent(e Event) error {
	if e.Source == "" {
		e.Source = BoilerPath
	}
	src := s.plant.byPath[splitPath(e.Source)]
	if src == nil {
		return fmt.Errorf("%w: %s", ErrUnknownNode, e.Source)
	}
	if e.Type == 0 {
		e.Type = id.BaseEventType
	}
	s.ev.mu.Lock()
	ev := &event{id: s.nextEventID(), typ: e.Type, source: src, time: time.Now(), msg: e.Message, sev: e.Severity}
	s.ev.mu.Unlock()
	s.dispatchEvent(ev)
	return nil
}

// nextEventID is a fresh EventId; the caller holds ev.mu.
func (s *Server) nextEventID() []byte {
	s.ev.n++
	b := make([]byte, 16)
	copy(b, "ferrysim")
	binary.BigEndian.PutUint64(b[8:], s.ev.n)
	return b
}

// SetAlarm changes the HighTemp condition and sends its event. Becoming
// active makes it unacknowledged and unconfirmed again.
func (s *Server) SetAlarm(active bool, severity uint16, message string) {
	s.ev.mu.Lock()
	a := &s.ev.alarm
	if active && !a.Active {
		a.Acked, a.Confirmed = false, false
	}
	a.Active, a.Severity, a.Message = active, severity, message
	ev := s.alarmEvent()
	s.ev.mu.Unlock()
	s.dispatchEvent(ev)
}

// alarmEvent is a new event of the condition's current state; the caller
// holds ev.mu.
func (s *Server) alarmEvent() *event {
	a := &s.ev.alarm
	a.EventID = s.nextEventID()
	st := *a
	return &event{id: st.EventID, typ: id.AlarmConditionType, source: s.plant.byPath[BoilerPath], time: time.Now(), msg: st.Message, sev: st.Severity, cond: &st}
}

// Alarm returns the HighTemp condition's state.
func (s *Server) Alarm() AlarmState {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	a := s.ev.alarm
	a.EventID = slices.Clone(a.EventID)
	return a
}

func (s *Server) dispatchEvent(ev *event) {
	s.ev.mu.Lock()
	s.ev.events++
	s.ev.mu.Unlock()
	g := s.cur.Load()
	if g == nil {
		return
	}
	g.evs.mu.Lock()
	items := make([]*evItem, 0, len(g.evs.items))
	for _, it := range g.evs.items {
		items = append(items, it)
	}
	g.evs.mu.Unlock()
	for _, it := range items {
		if !covers(it.notifier, ev.source) || !matches(it.where, 0, ev) {
			continue
		}
		g.pub.mu.Lock()
		x := g.pub.subs[it.sub]
		g.pub.mu.Unlock()
		if x == nil {
			g.evs.mu.Lock()
			delete(g.evs.items, it.id)
			g.evs.mu.Unlock()
			continue
		}
		fl := &ua.EventFieldList{ClientHandle: it.handle, EventFields: make([]*ua.Variant, len(it.sel))}
		for i, sel := range it.sel {
			fl.EventFields[i] = field(g, ev, sel)
		}
		select {
		case x.events <- fl:
		default:
			s.cnt.dropped.Add(1)
		}
	}
}

// covers reports whether events of src reach a notifier (its own, or an
// area above it).
func covers(notifier, src *node) bool {
	for n := src; n != nil; n = n.parent {
		if notifier == nil || n == notifier {
			return true
		}
	}
	return false
}

var eventParents = map[uint32]uint32{
	id.AlarmConditionType: id.AcknowledgeableConditionType, id.AcknowledgeableConditionType: id.ConditionType,
	id.ConditionType: id.BaseEventType,
}

func isSubtype(t, of uint32) bool {
	for ; t != 0; t = eventParents[t] {
		if t == of {
			return true
		}
	}
	return of == id.BaseEventType
}

// field is one select clause's value for an event: null for what the
// event does not have.
func field(g *generation, ev *event, sel *ua.SimpleAttributeOperand) *ua.Variant {
	if sel == nil {
		return ua.MustVariant(nil)
	}
	names := make([]string, len(sel.BrowsePath))
	for i, q := range sel.BrowsePath {
		if q != nil {
			names[i] = q.Name
		}
	}
	path := strings.Join(names, "/")
	c := ev.cond
	text := func(s string) *ua.LocalizedText {
		return &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: s}
	}
	var v any
	switch path {
	case "":
		if sel.AttributeID == ua.AttributeIDNodeID && c != nil {
			v = g.ns.nodeID(g.s.plant.byPath[AlarmPath])
		}
	case "EventId":
		v = ev.id
	case "EventType":
		v = ua.NewNumericNodeID(0, ev.typ)
	case "SourceNode":
		v = g.ns.nodeID(ev.source)
	case "SourceName":
		v = ev.source.path
	case "Time", "ReceiveTime":
		v = ev.time
	case "Message":
		v = text(ev.msg)
	case "Severity":
		v = ev.sev
	}
	if c != nil {
		switch path {
		case "ConditionName":
			v = "HighTemp"
		case "Retain":
			v = c.Active || !c.Acked || !c.Confirmed
		case "ActiveState/Id":
			v = c.Active
		case "AckedState/Id":
			v = c.Acked
		case "ConfirmedState/Id":
			v = c.Confirmed
		case "ActiveState":
			v = text(map[bool]string{true: "Active", false: "Inactive"}[c.Active])
		case "AckedState":
			v = text(map[bool]string{true: "Acknowledged", false: "Unacknowledged"}[c.Acked])
		case "ConfirmedState":
			v = text(map[bool]string{true: "Confirmed", false: "Unconfirmed"}[c.Confirmed])
		case "Comment":
			v = text(c.Comment)
		}
	}
	return ua.MustVariant(v)
}

// matches evaluates element i of a where clause; an empty clause matches.
func matches(where []*ua.ContentFilterElement, i int, ev *event) bool {
	if len(where) == 0 {
		return true
	}
	v, _ := eval(where, i, ev, nil)
	b, _ := v.(bool)
	return b
}

// eval returns an element's value; ok is false for what the simulator
// cannot evaluate (checked when the item is created).
func eval(where []*ua.ContentFilterElement, i int, ev *event, g *generation) (any, bool) {
	if i < 0 || i >= len(where) || where[i] == nil {
		return nil, false
	}
	el := where[i]
	operand := func(k int) (any, bool) {
		if k >= len(el.FilterOperands) || el.FilterOperands[k] == nil {
			return nil, false
		}
		switch o := el.FilterOperands[k].Value.(type) {
		case *ua.LiteralOperand:
			if o.Value == nil {
				return nil, true
			}
			return o.Value.Value(), true
		case *ua.SimpleAttributeOperand:
			if ev == nil {
				return nil, true
			}
			return field(g, ev, o).Value(), true
		case *ua.ElementOperand:
			if int(o.Index) <= i {
				return nil, false // a loop
			}
			return eval(where, int(o.Index), ev, g)
		}
		return nil, false
	}
	a, okA := operand(0)
	switch el.FilterOperator {
	case ua.FilterOperatorOfType:
		n, ok := a.(*ua.NodeID)
		if !okA || (!ok && ev != nil) {
			return false, false
		}
		if ev == nil {
			return false, true
		}
		return n.Namespace() == 0 && isSubtype(ev.typ, n.IntID()), true
	case ua.FilterOperatorNot:
		b, _ := a.(bool)
		return !b, okA
	}
	b, okB := operand(1)
	if !okA || !okB {
		return nil, false
	}
	switch el.FilterOperator {
	case ua.FilterOperatorAnd:
		x, _ := a.(bool)
		y, _ := b.(bool)
		return x && y, true
	case ua.FilterOperatorOr:
		x, _ := a.(bool)
		y, _ := b.(bool)
		return x || y, true
	case ua.FilterOperatorEquals:
		x, xn := number(a)
		y, yn := number(b)
		if xn && yn {
			return x == y, true
		}
		return fmt.Sprint(a) == fmt.Sprint(b), true
	case ua.FilterOperatorGreaterThan, ua.FilterOperatorGreaterThanOrEqual, ua.FilterOperatorLessThan, ua.FilterOperatorLessThanOrEqual:
		x, xn := number(a)
		y, yn := number(b)
		if !xn || !yn {
			return false, true
		}
		switch el.FilterOperator {
		case ua.FilterOperatorGreaterThan:
			return x > y, true
		case ua.FilterOperatorGreaterThanOrEqual:
			return x >= y, true
		case ua.FilterOperatorLessThan:
			return x < y, true
		}
		return x <= y, true
	}
	return nil, false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case uint16:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint32:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case uint8:
		return float64(x), true
	case int16:
		return float64(x), true
	}
	return 0, false
}

// createEventItem files an event monitored item of subscription subID.
func (g *generation) createEventItem(subID uint32, tok string, req *ua.MonitoredItemCreateRequest) *ua.MonitoredItemCreateResult {
	bad := func(code ua.StatusCode) *ua.MonitoredItemCreateResult {
		return &ua.MonitoredItemCreateResult{StatusCode: code, FilterResult: ua.NewExtensionObject(nil)}
	}
	if g.simSub(subID, tok) == nil {
		return bad(ua.StatusBadSubscriptionIDInvalid)
	}
	nid := req.ItemToMonitor.NodeID
	var notifier *node
	switch {
	case nid != nil && nid.Namespace() == 0 && nid.IntID() == id.Server:
	default:
		notifier = g.ns.lookup(nid)
		if notifier == nil {
			return bad(ua.StatusBadNodeIDUnknown)
		}
		if notifier.notifier == 0 {
			return bad(ua.StatusBadNotSupported)
		}
	}
	p := req.RequestedParameters
	if p == nil || p.Filter == nil {
		return bad(ua.StatusBadEventFilterInvalid)
	}
	f, ok := p.Filter.Value.(*ua.EventFilter)
	if !ok || len(f.SelectClauses) == 0 {
		return bad(ua.StatusBadEventFilterInvalid)
	}
	it := &evItem{sub: subID, handle: p.ClientHandle, notifier: notifier, sel: f.SelectClauses}
	if f.WhereClause != nil {
		it.where = f.WhereClause.Elements
		if len(it.where) > 0 {
			if _, ok := eval(it.where, 0, nil, g); !ok {
				return bad(ua.StatusBadEventFilterInvalid)
			}
		}
	}
	g.evs.mu.Lock()
	if g.evs.items == nil {
		g.evs.items = map[uint32]*evItem{}
	}
	it.id = evItemBase + g.s.evItemIDs.Add(1)
	g.evs.items[it.id] = it
	g.evs.mu.Unlock()
	return &ua.MonitoredItemCreateResult{StatusCode: ua.StatusOK, MonitoredItemID: it.id, RevisedQueueSize: 1000, FilterResult: ua.NewExtensionObject(&ua.EventFilterResult{
		SelectClauseResults: make([]ua.StatusCode, len(f.SelectClauses)), SelectClauseDiagnosticInfos: []*ua.DiagnosticInfo{},
		WhereClauseResult: &ua.ContentFilterResult{ElementResults: []*ua.ContentFilterElementResult{}, ElementDiagnosticInfos: []*ua.DiagnosticInfo{}},
	})}
}

// deleteEventItems removes the event items among ids and reports which
// positions they were.
func (g *generation) deleteEventItems(ids []uint32) map[int]bool {
	g.evs.mu.Lock()
	defer g.evs.mu.Unlock()
	var mine map[int]bool
	for i, id := range ids {
		if _, ok := g.evs.items[id]; ok {
			delete(g.evs.items, id)
			if mine == nil {
				mine = map[int]bool{}
			}
			mine[i] = true
		}
	}
	return mine
}

// call is the Call service: the condition's Acknowledge and Confirm and
// the Mix method.
func (g *generation) call(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.CallRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	res := &ua.CallResponse{ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), DiagnosticInfos: []*ua.DiagnosticInfo{}}
	for _, m := range req.MethodsToCall {
		res.Results = append(res.Results, g.callOne(m))
	}
	return res, nil
}

func (g *generation) callOne(m *ua.CallMethodRequest) *ua.CallMethodResult {
	s := g.s
	s.ev.mu.Lock()
	s.ev.calls++
	s.ev.mu.Unlock()
	out := &ua.CallMethodResult{InputArgumentResults: []ua.StatusCode{}, InputArgumentDiagnosticInfos: []*ua.DiagnosticInfo{}, OutputArguments: []*ua.Variant{}}
	if m == nil || m.ObjectID == nil || m.MethodID == nil {
		out.StatusCode = ua.StatusBadNodeIDInvalid
		return out
	}
	obj := g.ns.lookup(m.ObjectID)
	if obj == nil {
		out.StatusCode = ua.StatusBadNodeIDUnknown
		return out
	}
	// Check every argument's type against the declaration, as a server
	// must; a wrong one is BadTypeMismatch in its own result.
	args := func(types ...ua.TypeID) bool {
		switch {
		case len(m.InputArguments) < len(types):
			out.StatusCode = ua.StatusBadArgumentsMissing
			return false
		case len(m.InputArguments) > len(types):
			out.StatusCode = ua.StatusBadTooManyArguments
			return false
		}
		out.InputArgumentResults = make([]ua.StatusCode, len(types))
		good := true
		for i, t := range types {
			if m.InputArguments[i] == nil || m.InputArguments[i].Type() != t {
				out.InputArgumentResults[i] = ua.StatusBadTypeMismatch
				good = false
			}
		}
		if !good {
			out.StatusCode = ua.StatusBadInvalidArgument
		}
		return good
	}
	mid := m.MethodID
	switch {
	case mid.Namespace() == 0 && (mid.IntID() == AcknowledgeMethod || mid.IntID() == ConfirmMethod):
		if obj.path != AlarmPath {
			out.StatusCode = ua.StatusBadMethodInvalid
			return out
		}
		if !args(ua.TypeIDByteString, ua.TypeIDLocalizedText) {
			return out
		}
		eid := m.InputArguments[0].ByteString()
		comment := ""
		if lt := m.InputArguments[1].LocalizedText(); lt != nil {
			comment = lt.Text
		}
		s.ev.mu.Lock()
		a := &s.ev.alarm
		var ev *event
		switch {
		case string(eid) != string(a.EventID):
			out.StatusCode = ua.StatusBadEventIDUnknown
		case mid.IntID() == AcknowledgeMethod && a.Acked:
			out.StatusCode = ua.StatusBadConditionBranchAlreadyAcked
		case mid.IntID() == ConfirmMethod && a.Confirmed:
			out.StatusCode = ua.StatusBadConditionBranchAlreadyConfirmed
		case mid.IntID() == AcknowledgeMethod:
			a.Acked, a.Comment = true, comment
			ev = s.alarmEvent()
		default:
			a.Confirmed, a.Comment = true, comment
			ev = s.alarmEvent()
		}
		s.ev.mu.Unlock()
		if ev != nil {
			s.dispatchEvent(ev)
		}
		return out
	case mid.Namespace() == g.ns.idx && mid.Type() == ua.NodeIDTypeString && mid.StringID() == MixPath:
		if obj.path != MixerPath {
			out.StatusCode = ua.StatusBadMethodInvalid
			return out
		}
		if !args(ua.TypeIDDouble, ua.TypeIDUint16) {
			return out
		}
		ratio := m.InputArguments[0].Value().(float64)
		secs := m.InputArguments[1].Value().(uint16)
		if ratio < 0 {
			out.InputArgumentResults[0] = ua.StatusBadOutOfRange
			out.StatusCode = ua.StatusBadInvalidArgument
			return out
		}
		s.ev.mu.Lock()
		n := s.ev.calls
		s.ev.mu.Unlock()
		out.OutputArguments = []*ua.Variant{ua.MustVariant(ratio * float64(secs)), ua.MustVariant(fmt.Sprintf("B%d", n))}
		return out
	}
	out.StatusCode = ua.StatusBadMethodInvalid
	return out
}

// transferSubscriptions moves subscriptions to the calling session, with
// their unacknowledged messages kept for Republish.
func (g *generation) transferSubscriptions(sc *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.TransferSubscriptionsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess := g.srv.Session(req.RequestHeader)
	if sess == nil {
		return nil, ua.StatusBadSessionIDInvalid
	}
	tok := req.RequestHeader.AuthenticationToken.String()
	q := g.queue(tok)
	res := &ua.TransferSubscriptionsResponse{ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), DiagnosticInfos: []*ua.DiagnosticInfo{}}
	for _, sid := range req.SubscriptionIDs {
		g.pub.mu.Lock()
		x := g.pub.subs[sid]
		if x != nil {
			x.tok, x.q = tok, q
		}
		g.pub.mu.Unlock()
		if x == nil {
			res.Results = append(res.Results, &ua.TransferResult{StatusCode: ua.StatusBadSubscriptionIDInvalid, AvailableSequenceNumbers: []uint32{}})
			continue
		}
		ss := g.srv.SubscriptionService
		ss.Mu.Lock()
		x.sub.Session, x.sub.Channel = sess, sc
		ss.Mu.Unlock()
		x.mu.Lock()
		avail := make([]uint32, len(x.sent))
		for i, m := range x.sent {
			avail[i] = m.SequenceNumber
		}
		x.mu.Unlock()
		g.s.cnt.transferred.Add(1)
		res.Results = append(res.Results, &ua.TransferResult{StatusCode: ua.StatusOK, AvailableSequenceNumbers: avail})
	}
	return res, nil
}
