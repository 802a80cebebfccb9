package bus

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendJSONGolden(t *testing.T) {
	want := `{"source":"plc1","device":"d","tag":"ab/t1","value":1.5,"type":"double","quality":"GOOD","status":0,` +
		`"ts":"1970-01-01T00:00:00.000999000Z","ingest_ts":"1970-01-01T00:00:00.001000000Z","unit":"V","seq":5,"attrs":{"k":"v"}}`
	if got := string(goldenRecord.AppendJSON(nil)); got != want {
		t.Errorf("\n got  %s\n want %s", got, want)
	}
	bare := Record{Source: "s", Value: Long(-3), Quality: Bad, Status: 0x80000000, SourceTime: t0, IngestTime: t0 + 1, Seq: math.MaxUint64, Attrs: map[string]string{}}
	want = `{"source":"s","device":"","tag":"","value":-3,"type":"long","quality":"BAD","status":2147483648,` +
		`"ts":"2025-11-24T15:44:00.123456000Z","ingest_ts":"2025-11-24T15:44:00.123456001Z","seq":18446744073709551615}`
	if got := string(bare.AppendJSON(nil)); got != want {
		t.Errorf("unit and attrs should be left out:\n got  %s\n want %s", got, want)
	}
}

func TestAppendJSONValues(t *testing.T) {
	for _, c := range []struct {
		name  string
		v     Value
		value string // the raw JSON of "value"
	}{
		{"null", Null(), `null`},
		{"true", Bool(true), `true`},
		{"false", Bool(false), `false`},
		{"long max", Long(math.MaxInt64), `9223372036854775807`},
		{"long min", Long(math.MinInt64), `-9223372036854775808`},
		{"double", Double(21.5), `21.5`},
		{"double integral", Double(3), `3`},
		{"double max", Double(math.MaxFloat64), `1.7976931348623157e+308`},
		{"double -max", Double(-math.MaxFloat64), `-1.7976931348623157e+308`},
		{"double denormal", Double(math.SmallestNonzeroFloat64), `5e-324`},
		{"double small", Double(1e-7), `1e-07`},
		{"double -0", Double(math.Copysign(0, -1)), `-0`},
		{"NaN", Double(math.NaN()), `"NaN"`},
		{"+Inf", Double(math.Inf(1)), `"+Inf"`},
		{"-Inf", Double(math.Inf(-1)), `"-Inf"`},
		{"string", String(`a "quoted" \ line` + "\n"), `"a \"quoted\" \\ line\n"`},
		{"bytes", Bytes([]byte{0, 0xfb, 0xff}), `"APv/"`},
		{"bytes empty", Bytes(nil), `""`},
		{"unknown kind", Value{Kind: 42}, `null`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rec(c.v)
			line := r.AppendJSON(nil)
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(line, &obj); err != nil {
				t.Fatalf("invalid JSON %s: %v", line, err)
			}
			if got := string(obj["value"]); got != c.value {
				t.Errorf("value = %s, want %s", got, c.value)
			}
			var typ string
			if err := json.Unmarshal(obj["type"], &typ); err != nil || typ != c.v.Kind.String() {
				t.Errorf("type = %s, want %q", obj["type"], c.v.Kind)
			}
		})
	}
}

func TestAppendJSONFields(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			lines := bytes.Split(c.batch.AppendJSONLines(nil), []byte("\n"))
			if len(lines) != c.batch.Len()+1 || len(lines[len(lines)-1]) != 0 {
				t.Fatalf("%d lines for %d records", len(lines)-1, c.batch.Len())
			}
			for i, r := range c.batch.Records {
				var got struct {
					Source, Device, Tag, Unit, Quality, Type string
					TS                                       time.Time `json:"ts"`
					IngestTS                                 time.Time `json:"ingest_ts"`
					Status                                   uint32
					Seq                                      uint64
					Attrs                                    map[string]string
				}
				if err := json.Unmarshal(lines[i], &got); err != nil {
					t.Fatalf("record %d: %v in %.200s", i, err, lines[i])
				}
				want := r
				if got.Source != valid(want.Source) || got.Device != valid(want.Device) || got.Tag != valid(want.Tag) ||
					got.Unit != valid(want.Unit) || got.Quality != want.Quality.String() || got.Type != want.Value.Kind.String() ||
					got.Status != want.Status || got.Seq != want.Seq ||
					got.TS.UnixNano() != want.SourceTime || got.IngestTS.UnixNano() != want.IngestTime ||
					len(got.Attrs) != len(want.Attrs) {
					t.Fatalf("record %d: JSON %.300s does not match %s", i, lines[i], short(want))
				}
				for k, v := range want.Attrs {
					if got.Attrs[valid(k)] != valid(v) {
						t.Fatalf("record %d: attr %q = %q, want %q", i, k, got.Attrs[k], v)
					}
				}
			}
		})
	}
}

// valid is what encoding/json makes of a string: invalid bytes become U+FFFD
// one for one.
func valid(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"`, `\`, "/", "\x00", "\x1f", "\x7f", "\t\r\n\b\f",
		"Grüße 温度 🌡️", "\u2028\u2029", "\xff", "a\xc3", "\xc3\x28", "\xed\xa0\x80", // surrogate half
		"\xf4\x90\x80\x80", // beyond U+10FFFF
		"<script>&amp;", strings.Repeat("\x01é\xfe", 50),
	} {
		quoted := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(quoted, &got); err != nil {
			t.Errorf("%q → invalid JSON %s: %v", s, quoted, err)
			continue
		}
		if want := valid(s); got != want {
			t.Errorf("%q → %s decodes to %q, want %q", s, quoted, got, want)
		}
	}
}

// expectedJSON is what encoding/json makes of the record, field by field,
// as the parsed value a consumer sees: the reference the hand-written
// encoder is checked against. Times come from time.Time.Format, the
// unix forms from UnixMilli and UnixMicro.
func expectedJSON(t testing.TB, r *Record, fields JSONFields, tf TimeFormat) map[string]any {
	if fields == 0 {
		fields = AllJSONFields
	}
	m := map[string]any{}
	put := func(f JSONFields, name string, v any) {
		if fields&f != 0 {
			m[name] = v
		}
	}
	var value any
	switch r.Value.Kind {
	case KindBool:
		value = r.Value.Bool()
	case KindLong:
		value = r.Value.Long()
	case KindDouble:
		f := r.Value.Double()
		switch {
		case math.IsNaN(f):
			value = "NaN"
		case math.IsInf(f, 1):
			value = "+Inf"
		case math.IsInf(f, -1):
			value = "-Inf"
		default:
			value = f
		}
	case KindString:
		value = r.Value.Str()
	case KindBytes:
		value = []byte(r.Value.Str()) // encoding/json: standard base64
	}
	tm := func(ns int64) any {
		t := time.Unix(0, ns).UTC()
		switch tf {
		case TimeUnixMs:
			return t.UnixMilli()
		case TimeUnixUs:
			return t.UnixMicro()
		}
		return t.Format("2006-01-02T15:04:05.000000000Z07:00")
	}
	put(JSONSource, "source", r.Source)
	put(JSONDevice, "device", r.Device)
	put(JSONTag, "tag", r.Tag)
	put(JSONValue, "value", value)
	put(JSONType, "type", r.Value.Kind.String())
	put(JSONQuality, "quality", r.Quality.String())
	put(JSONStatus, "status", r.Status)
	put(JSONTS, "ts", tm(r.SourceTime))
	put(JSONIngestTS, "ingest_ts", tm(r.IngestTime))
	if r.Unit != "" {
		put(JSONUnit, "unit", r.Unit)
	}
	put(JSONSeq, "seq", r.Seq)
	if len(r.Attrs) > 0 {
		put(JSONAttrs, "attrs", r.Attrs)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return parseJSON(t, b)
}

// parseJSON parses one JSON object keeping numbers exact: integers as
// int64 or uint64, the rest as float64.
func parseJSON(t testing.TB, p []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%v in %.300q", err, p)
	}
	if d.More() {
		t.Fatalf("more than one value in %.300q", p)
	}
	for k, v := range m {
		if n, ok := v.(json.Number); ok {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				m[k] = i
			} else if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
				m[k] = u
			} else {
				f, _ := strconv.ParseFloat(string(n), 64)
				m[k] = f
			}
		}
	}
	return m
}

func checkEquivalent(t testing.TB, e *JSONEncoder, r *Record, fields JSONFields, tf TimeFormat) {
	p := e.AppendRecord(nil, r)
	got, want := parseJSON(t, p), expectedJSON(t, r, fields, tf)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("encoder (fields %#x, %s) wrote %s\n got  %v\n want %v", fields, tf, p, got, want)
	}
}

// FuzzJSONEncoder checks that whatever a record holds, the encoder writes
// one JSON object that parses to what encoding/json writes for the same
// fields, with every field selection and time format, and that the
// timestamp cache never hands out a stale value.
func FuzzJSONEncoder(f *testing.F) {
	f.Add("plc1", "press-01", "line1/temperature", "°C", uint8(KindDouble), uint64(math.Float64bits(21.5)), "", int64(t0), int64(t0+1), uint64(5), uint32(0), uint8(0), "k", "v", uint16(0), uint8(0))
	f.Add("a\"b\\c\n", "\x00\x1f\x7f", "\u2028\u2029", "\xff\xfe", uint8(KindString), uint64(0), "<&>\t\xc3\x28", int64(-1), int64(math.MinInt64), uint64(math.MaxUint64), uint32(math.MaxUint32), uint8(2), "\xed\xa0\x80", "é", uint16(AllJSONFields), uint8(1))
	f.Add("", "", "", "", uint8(KindDouble), math.Float64bits(math.NaN()), "", int64(math.MaxInt64), int64(0), uint64(0), uint32(1), uint8(1), "", "", uint16(JSONValue|JSONTS), uint8(2))
	f.Add("s", "d", "t", "", uint8(KindDouble), math.Float64bits(math.Inf(-1)), "", int64(1e9), int64(-1e9+1), uint64(1), uint32(1), uint8(9), "", "", uint16(1), uint8(0))
	f.Add("s", "d", "t", "", uint8(KindDouble), math.Float64bits(math.Copysign(0, -1)), "", int64(1e15), int64(1e15+999_999), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	f.Add("s", "d", "t", "", uint8(KindDouble), math.Float64bits(1e-7), "", int64(0), int64(0), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	f.Add("s", "d", "t", "", uint8(KindBytes), uint64(0), "\x00\xfb\xff", int64(0), int64(0), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	f.Add("s", "d", "t", "", uint8(KindLong), uint64(1<<63), "", int64(0), int64(0), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	f.Add("s", "d", "t", "", uint8(KindBool), uint64(1), "", int64(0), int64(0), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	f.Add("s", "d", "t", "", uint8(77), uint64(1), "", int64(0), int64(0), uint64(1), uint32(1), uint8(0), "", "", uint16(0), uint8(0))
	e := [3]*JSONEncoder{} // one per time format, kept across inputs: the cache must stay right
	f.Fuzz(func(t *testing.T, source, device, tag, unit string, kind uint8, bits uint64, str string,
		ts, ingest int64, seq uint64, status uint32, quality uint8, ak, av string, fields uint16, tf uint8) {
		var v Value
		switch Kind(kind % 7) {
		case KindNull:
			v = Null()
		case KindBool:
			v = Bool(bits&1 == 1)
		case KindLong:
			v = Long(int64(bits))
		case KindDouble:
			v = Double(math.Float64frombits(bits))
		case KindString:
			v = String(str)
		case KindBytes:
			v = Bytes([]byte(str))
		default:
			v = Value{Kind: Kind(kind)}
			if v.Kind <= KindBytes {
				v.Kind = 42
			}
		}
		r := Record{Source: source, Device: device, Tag: tag, Unit: unit, Value: v, SourceTime: ts, IngestTime: ingest,
			Seq: seq, Status: status, Quality: Quality(quality % 4)}
		if ak != "" || av != "" {
			r.Attrs = map[string]string{ak: av, "z" + ak: av + "2"}
		}
		f := JSONFields(fields) & AllJSONFields
		format := TimeFormat(tf % 3)
		if e[format] == nil {
			e[format] = NewJSONEncoder(0, format)
		}
		enc := *e[format] // the cache, with this input's fields
		enc.fields = f
		checkEquivalent(t, &enc, &r, f, format)
		e[format].slots, e[format].sec, e[format].secOK, e[format].secText = enc.slots, enc.sec, enc.secOK, enc.secText
	})
}

// TestJSONTimes pins the time forms at the edges of what int64
// nanoseconds hold, and around a second boundary before 1970, where
// rounding down matters.
func TestJSONTimes(t *testing.T) {
	for _, ns := range []int64{0, -1, 1, -1e9, -1e9 + 1, 999_999_999, 1e9, math.MinInt64, math.MaxInt64, t0, t0 + 1, -t0} {
		for tf := range TimeFormat(3) {
			e := NewJSONEncoder(JSONTS, tf)
			r := Record{SourceTime: ns}
			for range 2 { // formatted, then from the cache
				checkEquivalent(t, e, &r, JSONTS, tf)
			}
		}
	}
}

// TestJSONTimeCache encodes records whose times collide in the cache and
// share seconds, interleaved: every record must show its own times.
func TestJSONTimeCache(t *testing.T) {
	e := NewJSONEncoder(JSONTS|JSONIngestTS, TimeRFC3339)
	var recs []Record
	for i := range 200 {
		recs = append(recs, Record{SourceTime: t0 + int64(i%17)*1e9 + int64(i%5), IngestTime: t0 + int64(i)*12_345_678})
	}
	for i := range 3 * len(recs) {
		r := &recs[(i*7)%len(recs)]
		checkEquivalent(t, e, r, JSONTS|JSONIngestTS, TimeRFC3339)
	}
}

func TestJSONShapes(t *testing.T) {
	b := variedBatch(5)
	e := NewJSONEncoder(JSONSeq|JSONTag, TimeUnixMs)
	for _, c := range []struct {
		shape JSONShape
		recs  []Record
		want  string
	}{
		{JSONLinesShape, b.Records[:2], `{"tag":"area/line/a/value","seq":0}` + "\n" + `{"tag":"area/line/b/value","seq":0}` + "\n"},
		{JSONArrayShape, b.Records[:2], `[{"tag":"area/line/a/value","seq":0},{"tag":"area/line/b/value","seq":0}]`},
		{JSONArrayShape, nil, `[]`},
		{JSONObjectShape, b.Records[1:2], `{"tag":"area/line/b/value","seq":0}`},
	} {
		if got := string(c.shape.Append(e, nil, c.recs)); got != c.want {
			t.Errorf("%s:\n got  %s\n want %s", c.shape, got, c.want)
		}
	}
	if got := string(NewJSONEncoder(JSONUnit, 0).AppendRecord(nil, &Record{})); got != "{}" {
		t.Errorf("no field written: %s, want {}", got)
	}
}

// TestJSONEncoderAllocs: no allocation per record, nor per batch, once the
// buffer is large enough; a pooled buffer comes back with its capacity.
func TestJSONEncoderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	poll := pollBatch(1000)
	buf := make([]byte, 0, 1<<20)
	for _, shape := range []JSONShape{JSONLinesShape, JSONArrayShape} {
		for tf := range TimeFormat(3) {
			e := NewJSONEncoder(0, tf)
			if n := testing.AllocsPerRun(20, func() { buf = shape.Append(e, buf[:0], poll.Records) }); n != 0 {
				t.Errorf("%s %s: %v allocs per batch, want 0", shape, tf, n)
			}
		}
	}
	var p Buffers
	e := NewJSONEncoder(0, TimeRFC3339)
	b := p.Get()
	b.B = e.AppendLines(b.B, poll.Records)
	p.Put(b)
	if n := testing.AllocsPerRun(20, func() {
		b := p.Get()
		b.B = e.AppendLines(b.B, poll.Records)
		p.Put(b)
	}); n > 0.1 { // a GC may empty the pool now and then
		t.Errorf("pooled buffer: %v allocs per message, want 0", n)
	}
}

// BenchmarkJSONEncoder: ns per record of each shape and time format, for
// a Modbus poll of 1,000 registers:
//
//	go test -run '^$' -bench JSONEncoder -benchmem -cpu 1 ./bus/
func BenchmarkJSONEncoder(b *testing.B) {
	poll := pollBatch(1000)
	for _, shape := range []JSONShape{JSONLinesShape, JSONArrayShape} {
		for tf := range TimeFormat(3) {
			b.Run(shape.String()+"/"+tf.String(), func(b *testing.B) {
				e := NewJSONEncoder(0, tf)
				buf := make([]byte, 0, 512<<10)
				for b.Loop() {
					buf = shape.Append(e, buf[:0], poll.Records)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*poll.Len()), "ns/record")
				b.ReportMetric(float64(len(buf))/float64(poll.Len()), "bytes/record")
			})
		}
	}
	b.Run("json/rfc3339", func(b *testing.B) {
		e := NewJSONEncoder(0, TimeRFC3339)
		buf := make([]byte, 0, 1<<10)
		for b.Loop() {
			for i := range poll.Records {
				buf = e.AppendRecord(buf[:0], &poll.Records[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*poll.Len()), "ns/record")
	})
}

// opcuaBatch is one publish of n OPC UA nodes: one device, string node ids,
// each value with its own source timestamp within the interval.
func opcuaBatch(n int) *Batch {
	b := &Batch{Records: make([]Record, n)}
	for i := range b.Records {
		b.Records[i] = Record{
			Source:     "opcua1",
			Device:     "line1-plc",
			Tag:        "ns=2;s=Line1.Machine" + strconv.Itoa(i/100) + ".Sensor" + strconv.Itoa(i%100),
			Value:      Double(20 + float64(i%100)*0.137),
			SourceTime: t0 + int64(i*7919%100_000)*1000,
			IngestTime: t0 + 100_000_000,
			Seq:        1_000_000 + uint64(i),
		}
	}
	return b
}

// TestBytesPerValue measures what each format puts on the wire per value
// (payload bytes, without MQTT or HTTP framing) for a Modbus poll of 1,000
// registers and an OPC UA publish of 1,000 nodes; the README quotes it:
//
//	go test -run TestBytesPerValue -v ./bus/
//
// Avro must stay compact: at most 25 bytes per value for the poll.
func TestBytesPerValue(t *testing.T) {
	slim := NewJSONEncoder(JSONTag|JSONValue|JSONTS, TimeUnixMs)
	full := NewJSONEncoder(0, TimeRFC3339)
	t.Logf("| format | Modbus poll, B/value | OPC UA publish, B/value |")
	t.Logf("|---|---|---|")
	rows := []struct {
		name string
		enc  func(b *Batch) int
	}{
		{"avro (one batch per message)", func(b *Batch) int { return len(b.AppendAvro(nil)) }},
		{"json-lines", func(b *Batch) int { return len(full.AppendLines(nil, b.Records)) }},
		{"json-array", func(b *Batch) int { return len(full.AppendArray(nil, b.Records)) }},
		{"json (one object per message)", func(b *Batch) int {
			n := 0
			for i := range b.Records {
				n += len(full.AppendRecord(nil, &b.Records[i]))
			}
			return n
		}},
		{"json-array, fields [tag, value, ts], unix_ms", func(b *Batch) int { return len(slim.AppendArray(nil, b.Records)) }},
	}
	poll, ua := pollBatch(1000), opcuaBatch(1000)
	for _, r := range rows {
		p, u := float64(r.enc(poll))/1000, float64(r.enc(ua))/1000
		t.Logf("| %s | %.1f | %.1f |", r.name, p, u)
		if strings.HasPrefix(r.name, "avro") && p > 25 {
			t.Errorf("avro: %.1f bytes per value of a poll, want at most 25", p)
		}
	}
}
