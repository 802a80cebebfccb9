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
// codec: encoding/json would reflect over every record and allocate.

// jsonTimeLayout is RFC 3339 with all nine fractional digits, so that
// timestamps have one width and sort as strings.
const jsonTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends the record as one JSON object:
//
//	{"source":"plc1","device":"press-01","tag":"line1/temperature",
//	 "value":21.5,"type":"double","quality":"GOOD","status":0,
//	 "ts":"2025-11-24T15:44:00.123456789Z","ingest_ts":"…","unit":"°C",
//	 "seq":42,"attrs":{"k":"v"}}
//
// type is the Kind name; bytes values are base64 (standard, padded). JSON has
// no NaN or infinities, so those doubles are the strings "NaN", "+Inf" and
// "-Inf", still with type "double". Times are UTC. unit and attrs are left
// out when empty; attrs keys are sorted. Invalid UTF-8 becomes U+FFFD.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"source":`...)
	dst = appendJSONString(dst, r.Source)
	dst = append(dst, `,"device":`...)
	dst = appendJSONString(dst, r.Device)
	dst = append(dst, `,"tag":`...)
	dst = appendJSONString(dst, r.Tag)
	dst = append(dst, `,"value":`...)
	dst = appendJSONValue(dst, r.Value)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, r.Value.Kind.String())
	dst = append(dst, `,"quality":`...)
	dst = appendJSONString(dst, r.Quality.String())
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendUint(dst, uint64(r.Status), 10)
	dst = append(dst, `,"ts":"`...)
	dst = time.Unix(0, r.SourceTime).UTC().AppendFormat(dst, jsonTimeLayout)
	dst = append(dst, `","ingest_ts":"`...)
	dst = time.Unix(0, r.IngestTime).UTC().AppendFormat(dst, jsonTimeLayout)
	dst = append(dst, '"')
	if r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendJSONString(dst, r.Unit)
	}
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	if len(r.Attrs) > 0 {
		dst = append(dst, `,"attrs":{`...)
		var inline [sortedKeysInline]string
		keys := inline[:0]
		if len(r.Attrs) > len(inline) {
			keys = make([]string, 0, len(r.Attrs))
		}
		for k := range r.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSONString(dst, r.Attrs[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// AppendJSONLines appends the batch as newline-delimited JSON, one
// AppendJSON object per line (content type ContentTypeJSON).
func (b *Batch) AppendJSONLines(dst []byte) []byte {
	for i := range b.Records {
		dst = b.Records[i].AppendJSON(dst)
		dst = append(dst, '\n')
	}
	return dst
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

// appendJSONString quotes s. Besides what JSON requires it escapes U+2028 and
// U+2029, which end a line in JavaScript, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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
