package opcua

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
)

// Quality maps an OPC UA StatusCode to the record's quality class: the two
// top bits are 00 Good, 01 Uncertain, 10 (and 11) Bad.
func Quality(s ua.StatusCode) bus.Quality {
	switch uint32(s) >> 30 {
	case 0:
		return bus.Good
	case 1:
		return bus.Uncertain
	}
	return bus.Bad
}

// Value converts a variant to a record value; see the README's table.
// Scalars of the numeric, boolean, string and byte string types convert
// without allocating (beyond what decoding already did).
func Value(v *ua.Variant) bus.Value {
	if v == nil {
		return bus.Null()
	}
	if v.Has(ua.VariantArrayValues) {
		return jsonValue(v.Value())
	}
	switch x := v.Value().(type) {
	case nil:
		return bus.Null()
	case bool:
		return bus.Bool(x)
	case int8:
		return bus.Long(int64(x))
	case uint8:
		return bus.Long(int64(x))
	case int16:
		return bus.Long(int64(x))
	case uint16:
		return bus.Long(int64(x))
	case int32:
		return bus.Long(int64(x))
	case uint32:
		return bus.Long(int64(x))
	case int64:
		return bus.Long(x)
	case uint64:
		if x <= math.MaxInt64 {
			return bus.Long(int64(x))
		}
		return bus.String(strconv.FormatUint(x, 10))
	case float32:
		return bus.Double(float64(x))
	case float64:
		return bus.Double(x)
	case string:
		return bus.String(x)
	case []byte:
		return bus.Bytes(x)
	case time.Time:
		return bus.String(x.UTC().Format(time.RFC3339Nano))
	case ua.XMLElement:
		return bus.String(string(x))
	case *ua.LocalizedText:
		if x == nil {
			return bus.Null()
		}
		return bus.String(x.Text)
	case *ua.QualifiedName:
		if x == nil {
			return bus.Null()
		}
		return bus.String(qualifiedName(x))
	case *ua.NodeID:
		return bus.String(x.String())
	case *ua.ExpandedNodeID:
		return bus.String(x.String())
	case ua.StatusCode:
		return bus.Long(int64(uint32(x)))
	case *ua.GUID:
		return bus.String(x.String())
	case *ua.Variant:
		return Value(x)
	}
	return jsonValue(v.Value())
}

func qualifiedName(q *ua.QualifiedName) string {
	if q.NamespaceIndex == 0 {
		return q.Name
	}
	return strconv.Itoa(int(q.NamespaceIndex)) + ":" + q.Name
}

// jsonValue renders arrays, structures (ExtensionObjects) and the rarer
// built-in types as a JSON string.
func jsonValue(v any) bus.Value {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return bus.String(fmt.Sprint(v))
	}
	return bus.String(string(b))
}

// jsonable maps OPC UA types to what reads well as JSON.
func jsonable(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float32:
		return finite(float64(x))
	case float64:
		return finite(x)
	case *ua.LocalizedText:
		if x == nil {
			return nil
		}
		return x.Text
	case *ua.QualifiedName:
		if x == nil {
			return nil
		}
		return qualifiedName(x)
	case *ua.NodeID:
		return x.String()
	case *ua.ExpandedNodeID:
		return x.String()
	case ua.StatusCode:
		return uint32(x)
	case *ua.GUID:
		return x.String()
	case ua.XMLElement:
		return string(x)
	case *ua.Variant:
		if x == nil {
			return nil
		}
		return jsonable(x.Value())
	case *ua.DataValue:
		if x == nil || x.Value == nil {
			return nil
		}
		return jsonable(x.Value.Value())
	case *ua.ExtensionObject:
		if x == nil {
			return nil
		}
		if x.Value == nil {
			m := map[string]any{"type_id": ""}
			if x.TypeID != nil {
				m["type_id"] = x.TypeID.String()
			}
			return m
		}
		return jsonable(x.Value)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			// an array of Byte: numbers, not base64
			out := make([]int, rv.Len())
			for i := range out {
				out[i] = int(rv.Index(i).Uint())
			}
			return out
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = jsonable(rv.Index(i).Interface())
		}
		return out
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return jsonable(rv.Elem().Interface())
	case reflect.Struct:
		out := make(map[string]any, rv.NumField())
		t := rv.Type()
		for i := range rv.NumField() {
			if f := t.Field(i); f.IsExported() {
				out[f.Name] = jsonable(rv.Field(i).Interface())
			}
		}
		return out
	}
	return v
}

// finite keeps NaN and infinities, which JSON cannot hold, as strings.
func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}

// ErrConvert is wrapped by errors converting a written value to a node's
// data type.
var ErrConvert = fmt.Errorf("cannot convert value")

// toVariant converts a written value to the node's built-in data type.
// Arrays (value rank ≥ 1) take a JSON array string.
func toVariant(dataType *ua.NodeID, valueRank int32, v bus.Value) (*ua.Variant, error) {
	if dataType == nil || dataType.Namespace() != 0 {
		return nil, fmt.Errorf("%w: data type %v is not a built-in type", ErrConvert, dataType)
	}
	t := dataType.IntID()
	if valueRank >= 1 {
		if v.Kind != bus.KindString {
			return nil, fmt.Errorf("%w: the node holds an array; write a JSON array string", ErrConvert)
		}
		var elems []any
		dec := json.NewDecoder(strings.NewReader(v.Str()))
		dec.UseNumber()
		if err := dec.Decode(&elems); err != nil {
			return nil, fmt.Errorf("%w: the node holds an array; %q is not a JSON array: %v", ErrConvert, v.Str(), err)
		}
		return arrayVariant(t, elems)
	}
	x, err := scalar(t, v)
	if err != nil {
		return nil, err
	}
	return ua.NewVariant(x)
}

// scalar converts v to the Go type of built-in type t.
func scalar(t uint32, v bus.Value) (any, error) {
	name := id.Name(t)
	fail := func(why string) error {
		return fmt.Errorf("%w: %s to %s: %s", ErrConvert, v.Kind, name, why)
	}
	intIn := func(lo, hi float64) (int64, error) {
		var f float64
		switch v.Kind {
		case bus.KindLong:
			if hi <= math.MaxInt64 && (v.Long() < int64(lo) || float64(v.Long()) > hi) {
				return 0, fail(fmt.Sprintf("%d is out of range %g…%g", v.Long(), lo, hi))
			}
			return v.Long(), nil
		case bus.KindBool, bus.KindDouble:
			f, _ = v.Float()
		case bus.KindString:
			n, err := strconv.ParseFloat(strings.TrimSpace(v.Str()), 64)
			if err != nil {
				return 0, fail(fmt.Sprintf("%q is not a number", v.Str()))
			}
			f = n
		default:
			return 0, fail("not a number")
		}
		if f != math.Trunc(f) || f < lo || f > hi {
			return 0, fail(fmt.Sprintf("%g is not an integer in %g…%g", f, lo, hi))
		}
		return int64(f), nil
	}
	num := func() (float64, error) {
		if f, ok := v.Float(); ok {
			return f, nil
		}
		if v.Kind == bus.KindString {
			f, err := strconv.ParseFloat(strings.TrimSpace(v.Str()), 64)
			if err == nil {
				return f, nil
			}
		}
		return 0, fail("not a number")
	}
	switch t {
	case id.Boolean:
		switch v.Kind {
		case bus.KindBool:
			return v.Bool(), nil
		case bus.KindLong, bus.KindDouble:
			f, _ := v.Float()
			if f == 0 || f == 1 {
				return f == 1, nil
			}
		case bus.KindString:
			if b, err := strconv.ParseBool(strings.TrimSpace(v.Str())); err == nil {
				return b, nil
			}
		}
		return nil, fail("expected true/false or 0/1")
	case id.SByte:
		n, err := intIn(math.MinInt8, math.MaxInt8)
		return int8(n), err
	case id.Byte:
		n, err := intIn(0, math.MaxUint8)
		return uint8(n), err
	case id.Int16:
		n, err := intIn(math.MinInt16, math.MaxInt16)
		return int16(n), err
	case id.UInt16:
		n, err := intIn(0, math.MaxUint16)
		return uint16(n), err
	case id.Int32:
		n, err := intIn(math.MinInt32, math.MaxInt32)
		return int32(n), err
	case id.UInt32:
		n, err := intIn(0, math.MaxUint32)
		return uint32(n), err
	case id.Int64:
		n, err := intIn(math.MinInt64, math.MaxInt64)
		return n, err
	case id.UInt64:
		if v.Kind == bus.KindString {
			n, err := strconv.ParseUint(strings.TrimSpace(v.Str()), 10, 64)
			if err != nil {
				return nil, fail(fmt.Sprintf("%q is not an unsigned integer", v.Str()))
			}
			return n, nil
		}
		n, err := intIn(0, math.MaxInt64)
		return uint64(n), err
	case id.Float:
		f, err := num()
		if err == nil && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
			return nil, fail(fmt.Sprintf("%g is out of range for Float", f))
		}
		return float32(f), err
	case id.Double:
		return num()
	case id.String:
		switch v.Kind {
		case bus.KindString, bus.KindBytes:
			return v.Str(), nil
		}
		return v.String(), nil
	case id.DateTime:
		switch v.Kind {
		case bus.KindString:
			tm, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v.Str()))
			if err != nil {
				return nil, fail(fmt.Sprintf("%q is not an RFC 3339 time", v.Str()))
			}
			return tm, nil
		case bus.KindLong:
			return time.Unix(0, v.Long()).UTC(), nil
		}
		return nil, fail("expected an RFC 3339 string or Unix nanoseconds")
	case id.ByteString:
		switch v.Kind {
		case bus.KindBytes, bus.KindString:
			return v.Bytes(), nil
		}
		return nil, fail("expected bytes or a string")
	case id.LocalizedText:
		if v.Kind == bus.KindString {
			return &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: v.Str()}, nil
		}
		return nil, fail("expected a string")
	}
	return nil, fail("writing this data type is not supported")
}

func arrayVariant(t uint32, elems []any) (*ua.Variant, error) {
	conv := func(e any) (bus.Value, error) {
		switch x := e.(type) {
		case bool:
			return bus.Bool(x), nil
		case string:
			return bus.String(x), nil
		case json.Number:
			if n, err := x.Int64(); err == nil {
				return bus.Long(n), nil
			}
			f, err := x.Float64()
			return bus.Double(f), err
		}
		return bus.Value{}, fmt.Errorf("%w: array element %v is not a scalar", ErrConvert, e)
	}
	var first any
	if t0, err := scalar(t, bus.Long(0)); err == nil {
		first = t0
	} else if t0, err := scalar(t, bus.String("")); err == nil {
		first = t0
	} else {
		return nil, err
	}
	out := reflect.MakeSlice(reflect.SliceOf(reflect.TypeOf(first)), 0, len(elems))
	for _, e := range elems {
		bv, err := conv(e)
		if err != nil {
			return nil, err
		}
		x, err := scalar(t, bv)
		if err != nil {
			return nil, err
		}
		out = reflect.Append(out, reflect.ValueOf(x))
	}
	return ua.NewVariant(out.Interface())
}
