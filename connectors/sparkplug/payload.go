package sparkplug

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
)

// Namespace is the first topic level of Sparkplug B (tck-id-topic-structure-namespace-a).
const Namespace = "spBv1.0"

// Message types (the topic's verb).
const (
	NBIRTH = "NBIRTH"
	NDEATH = "NDEATH"
	NDATA  = "NDATA"
	NCMD   = "NCMD"
	DBIRTH = "DBIRTH"
	DDEATH = "DDEATH"
	DDATA  = "DDATA"
	DCMD   = "DCMD"
	STATE  = "STATE"
)

// Metric names the specification reserves.
const (
	metricBdSeq   = "bdSeq"
	metricRebirth = "Node Control/Rebirth"
)

// Quality codes of the well-known "Quality" property.
const (
	qualityBad   = 0
	qualityGood  = 192
	qualityStale = 500
	propQuality  = "Quality"
	// propUnit carries the engineering unit. The specification names no
	// key for it; "engUnit" is the one host applications (Ignition) read.
	propUnit = "engUnit"
)

// Topic is a parsed Sparkplug topic.
type Topic struct {
	Group, Verb, Node, Device string
	HostID                    string // STATE only
}

// ParseTopic splits spBv1.0/<group>/<verb>/<node>[/<device>] or
// spBv1.0/STATE/<host_id>.
func ParseTopic(s string) (Topic, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 3 || parts[0] != Namespace {
		return Topic{}, fmt.Errorf("topic %q is not %s/<group>/<type>/<node>[/<device>]", s, Namespace)
	}
	if parts[1] == STATE && len(parts) == 3 {
		return Topic{Verb: STATE, HostID: parts[2]}, nil
	}
	if len(parts) < 4 || len(parts) > 5 {
		return Topic{}, fmt.Errorf("topic %q is not %s/<group>/<type>/<node>[/<device>]", s, Namespace)
	}
	t := Topic{Group: parts[1], Verb: parts[2], Node: parts[3]}
	if len(parts) == 5 {
		t.Device = parts[4]
	}
	device := t.Device != ""
	switch t.Verb {
	case NBIRTH, NDEATH, NDATA, NCMD:
		if device {
			return Topic{}, fmt.Errorf("topic %q: %s takes no device id", s, t.Verb)
		}
	case DBIRTH, DDEATH, DDATA, DCMD:
		if !device {
			return Topic{}, fmt.Errorf("topic %q: %s needs a device id", s, t.Verb)
		}
	default:
		return Topic{}, fmt.Errorf("topic %q: %q is not a Sparkplug message type", s, t.Verb)
	}
	return t, nil
}

func nodeTopic(group, verb, node string) string {
	return Namespace + "/" + group + "/" + verb + "/" + node
}

func deviceTopic(group, verb, node, device string) string {
	return Namespace + "/" + group + "/" + verb + "/" + node + "/" + device
}

// StateTopic is where a host application publishes its STATE.
func StateTopic(hostID string) string { return Namespace + "/" + STATE + "/" + hostID }

// Decode parses a Sparkplug B payload. It checks what every consumer relies
// on beyond the wire format: a property set's keys and values pair up.
func Decode(b []byte) (*spb.Payload, error) {
	p := &spb.Payload{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("sparkplug payload: %w", err)
	}
	for _, m := range p.Metrics {
		if ps := m.GetProperties(); ps != nil && len(ps.Keys) != len(ps.Values) {
			return nil, fmt.Errorf("sparkplug payload: metric %q: %d property keys for %d values", m.GetName(), len(ps.Keys), len(ps.Values))
		}
	}
	return p, nil
}

// errUnsupported marks a datatype ferry's records cannot carry (DataSet,
// Template, arrays).
var errUnsupported = errors.New("unsupported datatype")

// defaultType is the datatype of a value kind, when no rule says otherwise.
func defaultType(k bus.Kind) (spb.DataType, bool) {
	switch k {
	case bus.KindBool:
		return spb.DataType_Boolean, true
	case bus.KindLong:
		return spb.DataType_Int64, true
	case bus.KindDouble:
		return spb.DataType_Double, true
	case bus.KindString:
		return spb.DataType_String, true
	case bus.KindBytes:
		return spb.DataType_Bytes, true
	}
	return spb.DataType_Unknown, false
}

// integer returns v as a whole number, if it is one.
func integer(v bus.Value) (int64, bool) {
	switch v.Kind {
	case bus.KindLong:
		return v.Long(), true
	case bus.KindBool:
		if v.Bool() {
			return 1, true
		}
		return 0, true
	case bus.KindDouble:
		f := v.Double()
		if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
			return int64(f), true
		}
	}
	return 0, false
}

var intRange = map[spb.DataType][2]int64{
	spb.DataType_Int8:   {math.MinInt8, math.MaxInt8},
	spb.DataType_Int16:  {math.MinInt16, math.MaxInt16},
	spb.DataType_Int32:  {math.MinInt32, math.MaxInt32},
	spb.DataType_UInt8:  {0, math.MaxUint8},
	spb.DataType_UInt16: {0, math.MaxUint16},
	spb.DataType_UInt32: {0, math.MaxUint32},
}

// setValue puts v into m as datatype dt. A null value sets is_null and no
// value (tck-id-operational-behavior-data-publish-dbirth-values).
func setValue(m *spb.Payload_Metric, dt spb.DataType, v bus.Value) error {
	if v.IsNull() {
		m.IsNull = proto.Bool(true)
		m.Value = nil
		return nil
	}
	switch dt {
	case spb.DataType_Int8, spb.DataType_Int16, spb.DataType_Int32, spb.DataType_UInt8, spb.DataType_UInt16, spb.DataType_UInt32:
		i, ok := integer(v)
		r := intRange[dt]
		if !ok || i < r[0] || i > r[1] {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		// Signed types travel as their two's complement in 32 bits.
		m.Value = &spb.Payload_Metric_IntValue{IntValue: uint32(int32(i))}
		if dt >= spb.DataType_UInt8 {
			m.Value = &spb.Payload_Metric_IntValue{IntValue: uint32(i)}
		}
	case spb.DataType_Int64, spb.DataType_DateTime:
		i, ok := integer(v)
		if !ok {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_LongValue{LongValue: uint64(i)}
	case spb.DataType_UInt64:
		i, ok := integer(v)
		if !ok || i < 0 {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_LongValue{LongValue: uint64(i)}
	case spb.DataType_Float:
		f, ok := v.Float()
		if !ok {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_FloatValue{FloatValue: float32(f)}
	case spb.DataType_Double:
		f, ok := v.Float()
		if !ok {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_DoubleValue{DoubleValue: f}
	case spb.DataType_Boolean:
		i, ok := integer(v)
		if !ok {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_BooleanValue{BooleanValue: i != 0}
	case spb.DataType_String, spb.DataType_Text:
		m.Value = &spb.Payload_Metric_StringValue{StringValue: v.String()}
		if v.Kind == bus.KindString {
			m.Value = &spb.Payload_Metric_StringValue{StringValue: v.Str()}
		}
	case spb.DataType_Bytes:
		if v.Kind != bus.KindBytes && v.Kind != bus.KindString {
			return fmt.Errorf("%s does not fit %s", v, dt)
		}
		m.Value = &spb.Payload_Metric_BytesValue{BytesValue: []byte(v.Str())}
	default:
		return fmt.Errorf("%w %s", errUnsupported, dt)
	}
	return nil
}

// rawInt returns the integer a metric carries, whichever field holds it:
// the specification puts 8 to 32-bit types in int_value, but some edge
// nodes use long_value for all of them.
func rawInt(m *spb.Payload_Metric) (uint64, bool) {
	switch x := m.Value.(type) {
	case *spb.Payload_Metric_IntValue:
		return uint64(x.IntValue), true
	case *spb.Payload_Metric_LongValue:
		return x.LongValue, true
	}
	return 0, false
}

// valueOf reads a metric's value as datatype dt.
func valueOf(m *spb.Payload_Metric, dt spb.DataType) (bus.Value, error) {
	if m.GetIsNull() {
		return bus.Null(), nil
	}
	if m.Value == nil {
		return bus.Null(), fmt.Errorf("metric has neither a value nor is_null")
	}
	mismatch := func() (bus.Value, error) {
		return bus.Null(), fmt.Errorf("value %T does not match datatype %s", m.Value, dt)
	}
	switch dt {
	case spb.DataType_Int8, spb.DataType_Int16, spb.DataType_Int32, spb.DataType_Int64,
		spb.DataType_UInt8, spb.DataType_UInt16, spb.DataType_UInt32, spb.DataType_UInt64, spb.DataType_DateTime:
		u, ok := rawInt(m)
		if !ok {
			return mismatch()
		}
		switch dt {
		case spb.DataType_Int8:
			return bus.Long(int64(int8(u))), nil
		case spb.DataType_Int16:
			return bus.Long(int64(int16(u))), nil
		case spb.DataType_Int32:
			return bus.Long(int64(int32(u))), nil
		case spb.DataType_UInt8:
			return bus.Long(int64(uint8(u))), nil
		case spb.DataType_UInt16:
			return bus.Long(int64(uint16(u))), nil
		case spb.DataType_UInt32:
			return bus.Long(int64(uint32(u))), nil
		case spb.DataType_UInt64:
			if u > math.MaxInt64 {
				return bus.Double(float64(u)), nil
			}
		}
		return bus.Long(int64(u)), nil
	case spb.DataType_Float:
		if x, ok := m.Value.(*spb.Payload_Metric_FloatValue); ok {
			return bus.Double(float64(x.FloatValue)), nil
		}
		return mismatch()
	case spb.DataType_Double:
		switch x := m.Value.(type) {
		case *spb.Payload_Metric_DoubleValue:
			return bus.Double(x.DoubleValue), nil
		case *spb.Payload_Metric_FloatValue:
			return bus.Double(float64(x.FloatValue)), nil
		}
		return mismatch()
	case spb.DataType_Boolean:
		if x, ok := m.Value.(*spb.Payload_Metric_BooleanValue); ok {
			return bus.Bool(x.BooleanValue), nil
		}
		return mismatch()
	case spb.DataType_String, spb.DataType_Text, spb.DataType_UUID:
		if x, ok := m.Value.(*spb.Payload_Metric_StringValue); ok {
			return bus.String(x.StringValue), nil
		}
		return mismatch()
	case spb.DataType_Bytes, spb.DataType_File:
		if x, ok := m.Value.(*spb.Payload_Metric_BytesValue); ok {
			return bus.Bytes(x.BytesValue), nil
		}
		return mismatch()
	}
	return bus.Null(), fmt.Errorf("%w %s", errUnsupported, dt)
}

func qualityCode(q bus.Quality) int32 {
	switch q {
	case bus.Good:
		return qualityGood
	case bus.Uncertain:
		return qualityStale
	}
	return qualityBad
}

func qualityOf(code int64) bus.Quality {
	switch code {
	case qualityGood:
		return bus.Good
	case qualityStale:
		return bus.Uncertain
	}
	return bus.Bad
}

// properties reads the quality and unit of a metric; a metric without a
// Quality property is GOOD (the property is required only when it is not).
func properties(m *spb.Payload_Metric) (q bus.Quality, unit string, hasQ bool) {
	ps := m.GetProperties()
	if ps == nil {
		return bus.Good, "", false
	}
	for i, k := range ps.Keys {
		if i >= len(ps.Values) {
			break
		}
		v := ps.Values[i]
		switch k {
		case propQuality:
			switch x := v.Value.(type) {
			case *spb.Payload_PropertyValue_IntValue:
				q, hasQ = qualityOf(int64(int32(x.IntValue))), true
			case *spb.Payload_PropertyValue_LongValue:
				q, hasQ = qualityOf(int64(x.LongValue)), true
			}
		case propUnit:
			unit = v.GetStringValue()
		}
	}
	if !hasQ {
		q = bus.Good
	}
	return q, unit, hasQ
}

// propertySet builds a metric's properties: the unit when there is one,
// the quality when it is not GOOD or when always is set (births).
func propertySet(q bus.Quality, unit string, always bool) *spb.Payload_PropertySet {
	if unit == "" && q == bus.Good && !always {
		return nil
	}
	ps := &spb.Payload_PropertySet{}
	if q != bus.Good || always {
		ps.Keys = append(ps.Keys, propQuality)
		ps.Values = append(ps.Values, &spb.Payload_PropertyValue{
			Type:  proto.Uint32(uint32(spb.DataType_Int32)),
			Value: &spb.Payload_PropertyValue_IntValue{IntValue: uint32(qualityCode(q))},
		})
	}
	if unit != "" {
		ps.Keys = append(ps.Keys, propUnit)
		ps.Values = append(ps.Values, &spb.Payload_PropertyValue{
			Type:  proto.Uint32(uint32(spb.DataType_String)),
			Value: &spb.Payload_PropertyValue_StringValue{StringValue: unit},
		})
	}
	return ps
}

// msOf converts Unix ns to the specification's ms.
func msOf(ns int64) uint64 {
	if ns <= 0 {
		return 0
	}
	return uint64(ns / 1e6)
}
