package opcua

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
)

func TestValueMapping(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123000000, time.UTC)
	cases := []struct {
		in   any
		want bus.Value
	}{
		{true, bus.Bool(true)},
		{int8(-5), bus.Long(-5)},
		{uint8(200), bus.Long(200)},
		{int16(-300), bus.Long(-300)},
		{uint16(60000), bus.Long(60000)},
		{int32(-70000), bus.Long(-70000)},
		{uint32(4e9), bus.Long(4e9)},
		{int64(math.MinInt64), bus.Long(math.MinInt64)},
		{uint64(42), bus.Long(42)},
		{uint64(math.MaxUint64), bus.String("18446744073709551615")},
		{float32(21.5), bus.Double(21.5)},
		{2.25, bus.Double(2.25)},
		{"text", bus.String("text")},
		{[]byte{1, 2}, bus.Bytes([]byte{1, 2})},
		{ts, bus.String("2024-05-06T07:08:09.123Z")},
		{&ua.LocalizedText{Text: "hello", Locale: "en"}, bus.String("hello")},
		{&ua.QualifiedName{NamespaceIndex: 2, Name: "Temp"}, bus.String("2:Temp")},
		{ua.NewStringNodeID(2, "X"), bus.String("ns=2;s=X")},
		{ua.StatusBadNodeIDUnknown, bus.Long(0x80340000)},
		{[]float64{1, 2.5}, bus.String("[1,2.5]")},
		{[]string{"a", "b"}, bus.String(`["a","b"]`)},
		{[]int32{1, -2}, bus.String("[1,-2]")},
		{[]time.Time{ts}, bus.String(`["2024-05-06T07:08:09.123Z"]`)},
		{ua.NewExtensionObject(&ua.Range{Low: 1, High: 2}), bus.String(`{"High":2,"Low":1}`)},
	}
	for _, c := range cases {
		v, err := ua.NewVariant(c.in)
		if err != nil {
			t.Fatalf("%T: %v", c.in, err)
		}
		if got := Value(v); !got.Equal(c.want) {
			t.Errorf("%T %v → %v (%s), want %v (%s)", c.in, c.in, got, got.Kind, c.want, c.want.Kind)
		}
	}
	if !Value(nil).IsNull() || !Value(&ua.Variant{}).IsNull() {
		t.Error("empty variants must map to null")
	}
}

func TestQuality(t *testing.T) {
	for code, want := range map[ua.StatusCode]bus.Quality{
		ua.StatusOK: bus.Good, 0x00A00000: bus.Good, ua.StatusUncertain: bus.Uncertain, 0x40920000: bus.Uncertain,
		ua.StatusBadNodeIDUnknown: bus.Bad, 0xC0000000: bus.Bad,
	} {
		if got := Quality(code); got != want {
			t.Errorf("Quality(%#x) = %v, want %v", uint32(code), got, want)
		}
	}
}

func TestToVariant(t *testing.T) {
	dt := func(n uint32) *ua.NodeID { return ua.NewNumericNodeID(0, n) }
	ok := []struct {
		t    uint32
		rank int32
		in   bus.Value
		want any
	}{
		{id.Double, -1, bus.Long(7), 7.0},
		{id.Float, -1, bus.Double(1.5), float32(1.5)},
		{id.Int16, -1, bus.Double(12), int16(12)},
		{id.UInt32, -1, bus.String("42"), uint32(42)},
		{id.Boolean, -1, bus.Long(1), true},
		{id.Boolean, -1, bus.String("false"), false},
		{id.String, -1, bus.Double(2.5), "2.5"},
		{id.DateTime, -1, bus.String("2024-01-02T03:04:05Z"), time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{id.ByteString, -1, bus.Bytes([]byte{9}), []byte{9}},
	}
	for _, c := range ok {
		v, err := toVariant(dt(c.t), c.rank, c.in)
		if err != nil {
			t.Errorf("%s ← %v: %v", id.Name(c.t), c.in, err)
			continue
		}
		if got := v.Value(); !equalAny(got, c.want) {
			t.Errorf("%s ← %v = %#v, want %#v", id.Name(c.t), c.in, got, c.want)
		}
	}
	arr, err := toVariant(dt(id.Double), 1, bus.String("[1, 2.5]"))
	if err != nil || !equalAny(arr.Value(), []float64{1, 2.5}) {
		t.Errorf("array: %v %v", arr, err)
	}
	for _, c := range []struct {
		t  uint32
		in bus.Value
	}{
		{id.Int16, bus.Long(40000)}, {id.Byte, bus.Double(1.5)}, {id.Double, bus.String("hot")},
		{id.Boolean, bus.Long(2)}, {id.Float, bus.Double(1e300)}, {id.GUID, bus.String("x")},
	} {
		if _, err := toVariant(dt(c.t), -1, c.in); !errors.Is(err, ErrConvert) {
			t.Errorf("%s ← %v: want ErrConvert, got %v", id.Name(c.t), c.in, err)
		}
	}
}

func equalAny(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	case []float64:
		y, ok := b.([]float64)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}
