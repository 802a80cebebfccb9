// Package bus holds ferry's normalized record, its Avro codec and the
// message bus that carries encoded batches between modules.
package bus

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Quality is the OPC UA style quality class of a reading. The protocol's raw
// status code travels next to it in Record.Status.
type Quality uint8

const (
	Good Quality = iota
	Uncertain
	Bad
)

var qualityNames = [...]string{"GOOD", "UNCERTAIN", "BAD"}

func (q Quality) String() string {
	if int(q) < len(qualityNames) {
		return qualityNames[q]
	}
	return "Quality(" + strconv.Itoa(int(q)) + ")"
}

// ParseQuality accepts the names String returns, case-sensitively.
func ParseQuality(s string) (Quality, error) {
	for i, n := range qualityNames {
		if n == s {
			return Quality(i), nil
		}
	}
	return 0, fmt.Errorf("quality %q is not one of GOOD, UNCERTAIN, BAD", s)
}

// Kind is the type held by a Value. The order matches the branches of the
// value union in the Avro schema.
type Kind uint8

const (
	KindNull Kind = iota
	KindBool
	KindLong
	KindDouble
	KindString
	KindBytes
)

var kindNames = [...]string{"null", "boolean", "long", "double", "string", "bytes"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a typed reading. It is a plain struct rather than an interface so
// that records are copied, compared and encoded without allocating.
type Value struct {
	Kind Kind
	num  uint64 // bool (0/1), int64 bits or float64 bits
	str  string // string, or bytes stored as a string to keep Value immutable
}

func Null() Value { return Value{} }
func Bool(b bool) Value {
	v := Value{Kind: KindBool}
	if b {
		v.num = 1
	}
	return v
}
func Long(i int64) Value        { return Value{Kind: KindLong, num: uint64(i)} }
func Double(f float64) Value    { return Value{Kind: KindDouble, num: math.Float64bits(f)} }
func String(s string) Value     { return Value{Kind: KindString, str: s} }
func Bytes(b []byte) Value      { return Value{Kind: KindBytes, str: string(b)} }
func (v Value) IsNull() bool    { return v.Kind == KindNull }
func (v Value) Bool() bool      { return v.num != 0 }
func (v Value) Long() int64     { return int64(v.num) }
func (v Value) Double() float64 { return math.Float64frombits(v.num) }
func (v Value) Str() string     { return v.str }
func (v Value) Bytes() []byte   { return []byte(v.str) }

// Float returns the value as a number and whether it is one. Booleans count
// as 0 and 1, so that scale and deadband apply to digital tags too.
func (v Value) Float() (float64, bool) {
	switch v.Kind {
	case KindBool, KindLong:
		if v.Kind == KindBool {
			return float64(v.num), true
		}
		return float64(int64(v.num)), true
	case KindDouble:
		return v.Double(), true
	}
	return 0, false
}

// Equal reports whether two values have the same kind and content. NaN equals
// NaN here: a value that did not change must not look changed.
func (v Value) Equal(o Value) bool {
	return v.Kind == o.Kind && v.num == o.num && v.str == o.str
}

// String renders the value for logs and the scan view.
func (v Value) String() string {
	switch v.Kind {
	case KindNull:
		return "null"
	case KindBool:
		return strconv.FormatBool(v.Bool())
	case KindLong:
		return strconv.FormatInt(v.Long(), 10)
	case KindDouble:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	case KindString:
		return v.str
	case KindBytes:
		return fmt.Sprintf("%x", v.str)
	}
	return v.Kind.String()
}

// Record is one normalized reading. Timestamps are Unix nanoseconds so that a
// record stays small and comparable; the wire form keeps microseconds.
type Record struct {
	Source     string // module that produced it
	Device     string
	Tag        string // tag path, '/'-separated
	Value      Value
	Quality    Quality
	Status     uint32 // the protocol's raw status or exception code
	SourceTime int64  // Unix ns when the device sampled it
	IngestTime int64  // Unix ns when ferry received it
	Unit       string
	Seq        uint64 // per-source sequence number, for de-duplication downstream
	Attrs      map[string]string
}

// Time returns the source timestamp as a time.Time.
func (r *Record) Time() time.Time { return time.Unix(0, r.SourceTime) }

// Batch is the unit that travels on the bus: the records of one poll cycle,
// one publish response or one parsed chunk.
type Batch struct {
	Records []Record
	// Backfill marks a batch a sink's outlet sends from its backlog while
	// newer data goes ahead of it (store_and_forward drain mode
	// live-first). It is not encoded: an uplink says it on the wire (an
	// MQTT 5 user property, an HTTP header) so a consumer can tell history
	// arriving late from the current value.
	Backfill bool
}

// Len returns the number of records.
func (b *Batch) Len() int { return len(b.Records) }

// Reset empties the batch, keeping its capacity for reuse.
func (b *Batch) Reset() {
	clear(b.Records)
	b.Records = b.Records[:0]
	b.Backfill = false
}
