package opcua

import (
	"fmt"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// Kind is the OPC UA built-in type of a simulated variable.
type Kind uint8

// The kinds the Plant lines cycle through: variable i has Kinds[i%len(Kinds)].
const (
	Double Kind = iota
	Float
	Int32
	Int16
	UInt16
	UInt32
	Int64
	UInt64
	Boolean
	String
	DateTime
	Byte
	SByte
	numScalarKinds

	// Kinds used only by the fixed nodes under Plant/Types.
	ByteString Kind = iota + 100
	LocalizedText
	NodeID
	StatusCode
	DoubleArray
	ExtensionObject
)

var kindInfo = map[Kind]struct {
	name     string
	dataType uint32
	typeID   ua.TypeID
	rank     int32
}{
	Double:          {"Double", id.Double, ua.TypeIDDouble, -1},
	Float:           {"Float", id.Float, ua.TypeIDFloat, -1},
	Int32:           {"Int32", id.Int32, ua.TypeIDInt32, -1},
	Int16:           {"Int16", id.Int16, ua.TypeIDInt16, -1},
	UInt16:          {"UInt16", id.UInt16, ua.TypeIDUint16, -1},
	UInt32:          {"UInt32", id.UInt32, ua.TypeIDUint32, -1},
	Int64:           {"Int64", id.Int64, ua.TypeIDInt64, -1},
	UInt64:          {"UInt64", id.UInt64, ua.TypeIDUint64, -1},
	Boolean:         {"Boolean", id.Boolean, ua.TypeIDBoolean, -1},
	String:          {"String", id.String, ua.TypeIDString, -1},
	DateTime:        {"DateTime", id.DateTime, ua.TypeIDDateTime, -1},
	Byte:            {"Byte", id.Byte, ua.TypeIDByte, -1},
	SByte:           {"SByte", id.SByte, ua.TypeIDSByte, -1},
	ByteString:      {"ByteString", id.ByteString, ua.TypeIDByteString, -1},
	LocalizedText:   {"LocalizedText", id.LocalizedText, ua.TypeIDLocalizedText, -1},
	NodeID:          {"NodeId", id.NodeID, ua.TypeIDNodeID, -1},
	StatusCode:      {"StatusCode", id.StatusCode, ua.TypeIDStatusCode, -1},
	DoubleArray:     {"DoubleArray", id.Double, ua.TypeIDDouble, 1},
	ExtensionObject: {"Range", id.Range, ua.TypeIDExtensionObject, -1},
}

func (k Kind) String() string {
	if i, ok := kindInfo[k]; ok {
		return i.name
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// DataType returns the NodeId of the kind's OPC UA data type (namespace 0).
func (k Kind) DataType() *ua.NodeID { return ua.NewNumericNodeID(0, kindInfo[k].dataType) }

// TypeID returns the variant type the kind's values have.
func (k Kind) TypeID() ua.TypeID { return kindInfo[k].typeID }

// KindOf returns the kind of Plant line variable i (0-based).
func KindOf(i int) Kind { return Kind(i % int(numScalarKinds)) }

// epoch is the base of DateTime values.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Value returns the value Plant line variable i (0-based) holds at
// generation gen: every Tick advances the generation by one. Tests compute
// what they expect with it.
func Value(i int, gen uint64) any {
	g := int64(gen)
	n := int64(i)
	switch KindOf(i) {
	case Double:
		return float64(n) + float64(g)*0.25
	case Float:
		return float32(n%1000) + float32(g%1000)*0.5
	case Int32:
		return int32((n*7 + g) % 2_000_000_000)
	case Int16:
		return int16((n + g) % 30000)
	case UInt16:
		return uint16((n + g) % 60000)
	case UInt32:
		return uint32((n*3 + g) % 4_000_000_000)
	case Int64:
		return n*1_000_000_007 + g
	case UInt64:
		return uint64(n)*1_000_003 + uint64(g)
	case Boolean:
		return (n+g)%2 == 1
	case String:
		return fmt.Sprintf("v%d.%d", n, g)
	case DateTime:
		return epoch.Add(time.Duration(n)*time.Second + time.Duration(g)*time.Millisecond)
	case Byte:
		return uint8((n + g) % 256)
	case SByte:
		return int8((n+g)%256 - 128)
	}
	return nil
}

// fixedValue is the value of a node under Plant/Types.
func fixedValue(k Kind, gen uint64) any {
	switch k {
	case ByteString:
		return []byte{0xde, 0xad, byte(gen)}
	case LocalizedText:
		return &ua.LocalizedText{EncodingMask: ua.LocalizedTextText | ua.LocalizedTextLocale, Locale: "en", Text: fmt.Sprintf("running %d", gen)}
	case NodeID:
		return ua.NewNumericNodeID(0, id.Server)
	case StatusCode:
		return ua.StatusUncertain
	case DoubleArray:
		return []float64{1.5, 2.5, float64(gen)}
	case ExtensionObject:
		return ua.NewExtensionObject(&ua.Range{Low: 0, High: 100 + float64(gen)})
	}
	return nil
}

// variant wraps a Go value in a variant of kind k, refusing values of
// another type.
func variant(k Kind, v any) (*ua.Variant, error) {
	va, err := ua.NewVariant(v)
	if err != nil {
		return nil, err
	}
	if va.Type() != k.TypeID() {
		return nil, fmt.Errorf("%w: a %s node cannot take a %T", ErrTypeMismatch, k, v)
	}
	if (kindInfo[k].rank == 1) != (va.ArrayLength() > 0 || va.Has(ua.VariantArrayValues)) {
		return nil, fmt.Errorf("%w: a %s node cannot take a %T", ErrTypeMismatch, k, v)
	}
	return va, nil
}
