package bus

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSON is for consumers that ask for it (local MQTT topics, HTTP); the bus
// itself carries Avro. It is written by hand for the same reason as the Avro
// codec: encoding/json would reflect over every record and allocate. It is on
// the hot path of every JSON sink (issue 14: a quarter of the CPU of a
// Modbus→MQTT job, most of it formatting the same two timestamps again for
// every record of a poll), so a JSONEncoder formats each distinct timestamp
// once and reuses the bytes.

// AppendJSON appends the record as one JSON object:
//
//	{"source":"plc1","device":"press-01","tag":"line1/temperature",
//	 "value":21.5,"type":"double","quality":"GOOD","status":0,
//	 "ts":"2025-11-24T15:44:00.123456789Z","ingest_ts":"…","unit":"°C",
//	 "seq":42,"attrs":{"k":"v"}}
//
// type is the Kind name; bytes values are base64 (standard, padded). JSON has
// no NaN or infinities, so those doubles are the strings "NaN", "+Inf" and
// "-Inf", still with type "double". Times are UTC, RFC 3339 with all nine
// fractional digits, so that they have one width and sort as strings. unit
// and attrs are left out when empty; attrs keys are sorted. Invalid UTF-8
// becomes U+FFFD.
func (r *Record) AppendJSON(dst []byte) []byte {
	var e JSONEncoder
	return e.AppendRecord(dst, r)
}

// AppendJSONLines appends the batch as newline-delimited JSON, one
// AppendJSON object per line (content type ContentTypeJSON).
func (b *Batch) AppendJSONLines(dst []byte) []byte {
	var e JSONEncoder
	return e.AppendLines(dst, b.Records)
}

// JSONFields is a set of record fields to write; zero means all of them.
type JSONFields uint16

// The record fields, in the order they are written.
const (
	JSONSource JSONFields = 1 << iota
	JSONDevice
	JSONTag
	JSONValue
	JSONType
	JSONQuality
	JSONStatus
	JSONTS
	JSONIngestTS
	JSONUnit
	JSONSeq
	JSONAttrs

	AllJSONFields = JSONAttrs<<1 - 1
)

var jsonFieldNames = [...]string{"source", "device", "tag", "value", "type", "quality", "status", "ts", "ingest_ts", "unit", "seq", "attrs"}

// JSONFieldNames lists the field names ParseJSONFields accepts, in the order
// they are written.
func JSONFieldNames() []string { return jsonFieldNames[:] }

// ParseJSONField returns the field a name stands for.
func ParseJSONField(name string) (JSONFields, bool) {
	i := slices.Index(jsonFieldNames[:], name)
	if i < 0 {
		return 0, false
	}
	return 1 << i, true
}

// TimeFormat is how a JSONEncoder writes ts and ingest_ts.
type TimeFormat uint8

const (
	// TimeRFC3339 is a string, UTC, with nine fractional digits:
	// "2025-11-24T15:44:00.123456789Z".
	TimeRFC3339 TimeFormat = iota
	// TimeUnixMs is an integer, milliseconds since 1970 (rounded down),
	// what a JavaScript Date is built from.
	TimeUnixMs
	// TimeUnixUs is an integer, microseconds since 1970 (rounded down);
	// today's values stay below 2^53, so a JavaScript number holds them
	// exactly. Nanoseconds would not, which is why there is no unix_ns.
	TimeUnixUs
)

var timeFormatNames = [...]string{"rfc3339", "unix_ms", "unix_us"}

// TimeFormatNames lists the names ParseTimeFormat accepts.
func TimeFormatNames() []string { return timeFormatNames[:] }

// ParseTimeFormat returns the format a name stands for.
func ParseTimeFormat(name string) (TimeFormat, bool) {
	i := slices.Index(timeFormatNames[:], name)
	return TimeFormat(max(i, 0)), i >= 0
}

func (f TimeFormat) String() string {
	if int(f) < len(timeFormatNames) {
		return timeFormatNames[f]
	}
	return "TimeFormat(" + strconv.Itoa(int(f)) + ")"
}

// JSONEncoder writes records as JSON objects with a choice of fields and
// time format. It remembers the timestamps it formatted last (keyed on their
// nanosecond value), so the records of a poll, which share them, cost one
// formatting per batch instead of two per record. The zero value writes
// every field with RFC 3339 times. An encoder is not safe for concurrent
// use; it allocates nothing once its buffer is large enough.
type JSONEncoder struct {
	fields JSONFields
	time   TimeFormat
	slots  [tsSlots]tsSlot
	// sec and secText: the date and time of day of the last second
	// formatted ("2006-01-02T15:04:05"), for timestamps that differ only
	// below the second, as an OPC UA subscription's do.
	sec     int64
	secOK   bool
	secText [19]byte
}

// tsSlots is a power of two: a poll needs two (ts and ingest_ts), a batch
// that gathers several polls a few more.
const (
	tsBits  = 3
	tsSlots = 1 << tsBits
)

type tsSlot struct {
	ns int64
	n  uint8    // length of b in use; 0: empty
	b  [32]byte // `"2006-01-02T15:04:05.000000000Z"` is 32 with its quotes
}

// NewJSONEncoder returns an encoder that writes fields (zero: all) with
// times in tf.
func NewJSONEncoder(fields JSONFields, tf TimeFormat) *JSONEncoder {
	return &JSONEncoder{fields: fields, time: tf}
}

// AppendLines appends recs as newline-delimited JSON, one object per line.
func (e *JSONEncoder) AppendLines(dst []byte, recs []Record) []byte {
	for i := range recs {
		dst = e.AppendRecord(dst, &recs[i])
		dst = append(dst, '\n')
	}
	return dst
}

// AppendArray appends recs as one JSON array of objects.
func (e *JSONEncoder) AppendArray(dst []byte, recs []Record) []byte {
	dst = append(dst, '[')
	for i := range recs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = e.AppendRecord(dst, &recs[i])
	}
	return append(dst, ']')
}

// Quoted names of kinds and qualities, so a record costs no quoting of them.
var (
	kindJSON    [len(kindNames)]string
	qualityJSON [len(qualityNames)]string
)

func init() {
	for i, n := range kindNames {
		kindJSON[i] = strconv.Quote(n)
	}
	for i, n := range qualityNames {
		qualityJSON[i] = strconv.Quote(n)
	}
}

// AppendRecord appends r as one JSON object with the encoder's fields (see
// Record.AppendJSON for the form). A field left out by the selection is left
// out entirely; with no field at all the object is {}.
func (e *JSONEncoder) AppendRecord(dst []byte, r *Record) []byte {
	f := e.fields
	if f == 0 {
		f = AllJSONFields
	}
	// Every member is written with a leading comma; the first comma then
	// becomes the opening brace, which saves a branch per member.
	start := len(dst)
	if f&JSONSource != 0 {
		dst = append(dst, `,"source":`...)
		dst = appendJSONString(dst, r.Source)
	}
	if f&JSONDevice != 0 {
		dst = append(dst, `,"device":`...)
		dst = appendJSONString(dst, r.Device)
	}
	if f&JSONTag != 0 {
		dst = append(dst, `,"tag":`...)
		dst = appendJSONString(dst, r.Tag)
	}
	if f&JSONValue != 0 {
		dst = append(dst, `,"value":`...)
		dst = appendJSONValue(dst, r.Value)
	}
	if f&JSONType != 0 {
		dst = append(dst, `,"type":`...)
		if k := r.Value.Kind; int(k) < len(kindJSON) {
			dst = append(dst, kindJSON[k]...)
		} else {
			dst = appendJSONString(dst, k.String())
		}
	}
	if f&JSONQuality != 0 {
		dst = append(dst, `,"quality":`...)
		if q := r.Quality; int(q) < len(qualityJSON) {
			dst = append(dst, qualityJSON[q]...)
		} else {
			dst = appendJSONString(dst, q.String())
		}
	}
	if f&JSONStatus != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendUint(dst, uint64(r.Status), 10)
	}
	if f&JSONTS != 0 {
		dst = append(dst, `,"ts":`...)
		dst = e.appendTime(dst, r.SourceTime)
	}
	if f&JSONIngestTS != 0 {
		dst = append(dst, `,"ingest_ts":`...)
		dst = e.appendTime(dst, r.IngestTime)
	}
	if f&JSONUnit != 0 && r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendJSONString(dst, r.Unit)
	}
	if f&JSONSeq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
	}
	if f&JSONAttrs != 0 && len(r.Attrs) > 0 {
		dst = append(dst, `,"attrs":`...)
		dst = appendJSONAttrs(dst, r.Attrs)
	}
	if len(dst) == start {
		return append(dst, "{}"...)
	}
	dst[start] = '{'
	return append(dst, '}')
}

func appendJSONAttrs(dst []byte, attrs map[string]string) []byte {
	var inline [sortedKeysInline]string
	keys := inline[:0]
	if len(attrs) > len(inline) {
		keys = make([]string, 0, len(attrs))
	}
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, attrs[k])
	}
	return append(dst, '}')
}

// appendTime appends ns in the encoder's time format, from the slot cache
// when this value was formatted recently.
func (e *JSONEncoder) appendTime(dst []byte, ns int64) []byte {
	s := &e.slots[uint64(ns)*0x9E3779B97F4A7C15>>(64-tsBits)]
	if s.n == 0 || s.ns != ns {
		s.ns, s.n = ns, uint8(len(e.formatTime(s.b[:0], ns)))
	}
	return append(dst, s.b[:s.n]...)
}

// formatTime writes ns into dst, which has room for any form.
func (e *JSONEncoder) formatTime(dst []byte, ns int64) []byte {
	sec, frac := ns/1e9, ns%1e9
	if frac < 0 {
		sec, frac = sec-1, frac+1e9
	}
	switch e.time {
	case TimeUnixMs:
		return strconv.AppendInt(dst, sec*1e3+frac/1e6, 10)
	case TimeUnixUs:
		return strconv.AppendInt(dst, sec*1e6+frac/1e3, 10)
	}
	if !e.secOK || e.sec != sec {
		// An int64 of nanoseconds spans the years 1677 to 2262: always four
		// digits.
		t := time.Unix(sec, 0).UTC()
		y, mo, d := t.Date()
		h, mi, s := t.Clock()
		b := &e.secText
		put4(b[0:], y)
		b[4] = '-'
		put2(b[5:], int(mo))
		b[7] = '-'
		put2(b[8:], d)
		b[10] = 'T'
		put2(b[11:], h)
		b[13] = ':'
		put2(b[14:], mi)
		b[16] = ':'
		put2(b[17:], s)
		e.sec, e.secOK = sec, true
	}
	dst = append(dst, '"')
	dst = append(dst, e.secText[:]...)
	var f [10]byte
	f[0] = '.'
	q := int(frac)
	for i := 8; i >= 2; i -= 2 {
		put2(f[i:], q%100)
		q /= 100
	}
	f[1] = byte('0' + q)
	dst = append(dst, f[:]...)
	return append(dst, 'Z', '"')
}

// twoDigits holds 00 to 99, two bytes each.
const twoDigits = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

func put2(b []byte, v int) {
	b[0], b[1] = twoDigits[2*v], twoDigits[2*v+1]
}

func put4(b []byte, v int) {
	put2(b[0:], v/100)
	put2(b[2:], v%100)
}

func appendJSONValue(dst []byte, v Value) []byte {
	switch v.Kind {
	case KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case KindLong:
		return strconv.AppendInt(dst, v.Long(), 10)
	case KindDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			return append(dst, `"NaN"`...)
		case math.IsInf(f, 1):
			return append(dst, `"+Inf"`...)
		case math.IsInf(f, -1):
			return append(dst, `"-Inf"`...)
		}
		// Register values are mostly whole numbers: those print as the
		// integer they are, the same digits the float formatting gives,
		// in a fraction of its time. -0 keeps its sign the slow way.
		if f == math.Trunc(f) && math.Abs(f) < 1e15 && (f != 0 || !math.Signbit(f)) {
			return strconv.AppendInt(dst, int64(f), 10)
		}
		// Plain notation where it stays short, as encoding/json does.
		format := byte('f')
		if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
			format = 'e'
		}
		return strconv.AppendFloat(dst, f, format, -1, 64)
	case KindString:
		return appendJSONString(dst, v.str)
	case KindBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, []byte(v.str))
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash. One load per byte on the common
// path instead of four comparisons.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString quotes s. Besides what JSON requires it escapes U+2028 and
// U+2029, which end a line in JavaScript, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			switch r {
			case utf8.RuneError:
				dst = append(dst, `\ufffd`...)
			case '\u2028':
				dst = append(dst, `\u2028`...)
			default:
				dst = append(dst, `\u2029`...)
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
