package bus

import (
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// Shared byte fixtures: the unit tests walk them and FuzzDecode starts from
// them. Valid payloads are assembled here with encoding/binary rather than
// with the codec under test, so that a bug in the encoder cannot hide a bug
// in the decoder.

// payloadFixture is one payload and what decoding it must give: the records,
// or an error wrapping err.
type payloadFixture struct {
	name    string
	payload []byte
	want    []Record // when err is nil
	err     error
}

// wire builds Avro binary by hand. binary.AppendVarint is zigzag + varint,
// which is Avro's long.
type wire []byte

func header() wire {
	return wire(append([]byte{0xC3, 0x01}, binary.LittleEndian.AppendUint64(nil, pinnedFingerprint)...))
}
func (w wire) long(v int64) wire  { return binary.AppendVarint(w, v) }
func (w wire) str(s string) wire  { return append(w.long(int64(len(s))), s...) }
func (w wire) raw(b ...byte) wire { return append(w, b...) }
func (w wire) double(f float64) wire {
	return binary.LittleEndian.AppendUint64(w.long(3), math.Float64bits(f))
}
func (w wire) batch(src string, baseUs, seqBase int64) wire {
	return w.str(src).long(baseUs).long(seqBase)
}

// pinnedFingerprint is the CRC-64-AVRO of batch.v1's canonical form. It may
// change only with a new schema file, content type and version.
const pinnedFingerprint = 0xc292009573828258

// minimalRecord starts a record with the given source up to and including the
// value; rest finishes it.
func (w wire) minimalRecord(src string) wire {
	return w.str(src).str("d").str("t").long(0)
}
func (w wire) rest() wire {
	// quality GOOD, status 0, offsets 0, unit "", seq_offset 0, no attrs
	return w.long(0).long(0).long(0).long(0).str("").long(0).long(0)
}

// goldenPayload pins the wire format byte by byte.
var goldenPayload = []byte(header().raw(
	0x08, 'p', 'l', 'c', '1', // batch source "plc1"
	0xD0, 0x0F, // base_time 1000 µs
	0x0A,      // seq_base 5
	0x02,      // one record
	0x00,      // source "": the batch's
	0x02, 'd', // device
	0x02, 't', // tag
	0x06, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, // value: double 1.5
	0x00,      // GOOD
	0x00,      // status 0
	0x01,      // time_offset -1 µs
	0x00,      // ingest_offset 0
	0x02, 'V', // unit
	0x00,                             // seq_offset 0
	0x02, 0x02, 'k', 0x02, 'v', 0x00, // attrs {k: v}
	0x00, // end of records
))

var goldenRecord = Record{
	Source: "plc1", Device: "d", Tag: "t", Value: Double(1.5), Quality: Good,
	SourceTime: 999_000, IngestTime: 1_000_000, Unit: "V", Seq: 5,
	Attrs: map[string]string{"k": "v"},
}

func validFixtures() []payloadFixture {
	simple := func(src string, seq uint64) Record {
		return Record{Source: src, Device: "d", Tag: "t", Seq: seq}
	}
	plain := wire(nil).minimalRecord("").rest()
	return []payloadFixture{
		{name: "golden", payload: goldenPayload, want: []Record{goldenRecord}},
		{name: "no records", payload: header().batch("", 0, 0).long(0)},
		{
			name:    "negative block count with byte size",
			payload: header().batch("s", 0, 0).long(-2).long(int64(2 * len(plain))).raw(plain...).raw(plain...).long(0),
			want:    []Record{simple("s", 0), simple("s", 0)},
		},
		{
			name:    "several blocks",
			payload: header().batch("s", 0, 10).long(1).minimalRecord("").rest().long(1).minimalRecord("o").rest().long(0),
			want:    []Record{simple("s", 10), simple("o", 10)},
		},
		{
			name: "attrs in blocks, one with a byte size",
			payload: header().batch("s", 0, 0).long(1).minimalRecord("").
				long(0).long(0).long(0).long(0).str("").long(0).
				long(1).str("a").str("1").long(-1).long(4).str("b").str("2").long(0).
				long(0),
			want: []Record{{Source: "s", Device: "d", Tag: "t", Attrs: map[string]string{"a": "1", "b": "2"}}},
		},
		{
			name: "every kind and quality",
			payload: header().batch("", 0, 0).long(6).
				minimalRecord("a").rest().
				str("a").str("d").str("t").long(1).raw(1).long(1).long(0).long(0).long(0).str("").long(0).long(0).
				str("a").str("d").str("t").long(2).long(-7).long(2).long(0).long(0).long(0).str("").long(0).long(0).
				str("a").str("d").str("t").double(-2.5).rest().
				str("a").str("d").str("t").long(4).str("ok").rest().
				str("a").str("d").str("t").long(5).str("\x00\xff").rest().
				long(0),
			want: []Record{
				simple("a", 0),
				{Source: "a", Device: "d", Tag: "t", Value: Bool(true), Quality: Uncertain},
				{Source: "a", Device: "d", Tag: "t", Value: Long(-7), Quality: Bad},
				{Source: "a", Device: "d", Tag: "t", Value: Double(-2.5)},
				{Source: "a", Device: "d", Tag: "t", Value: String("ok")},
				{Source: "a", Device: "d", Tag: "t", Value: Bytes([]byte{0, 0xff})},
			},
		},
		{
			name: "extreme times, seq and status",
			payload: header().batch("s", maxMicros, -1).long(1).minimalRecord("").
				long(0).long(math.MaxUint32).long(minMicros - maxMicros).long(0).str("").long(1).long(0).
				long(0),
			want: []Record{{
				Source: "s", Device: "d", Tag: "t", Status: math.MaxUint32,
				SourceTime: minMicros * 1000, IngestTime: maxMicros * 1000, Seq: 0, // MaxUint64 + 1 wraps
			}},
		},
	}
}

func malformedFixtures() []payloadFixture {
	rec := header().batch("s", 0, 0).long(1)
	return []payloadFixture{
		{name: "empty", payload: nil, err: ErrMalformed},
		{name: "one byte", payload: []byte{0xC3}, err: ErrMalformed},
		{name: "header cut", payload: goldenPayload[:9], err: ErrMalformed},
		{name: "json", payload: []byte(`{"source":"plc1"}`), err: ErrSchemaMismatch},
		{name: "avro object container file", payload: []byte("Obj\x01"), err: ErrSchemaMismatch},
		{name: "other fingerprint", payload: append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, goldenPayload[10:]...), err: ErrSchemaMismatch},
		{name: "header only", payload: header(), err: ErrMalformed},
		{name: "no end of records", payload: goldenPayload[:len(goldenPayload)-1], err: ErrMalformed},
		{name: "trailing byte", payload: append(append([]byte(nil), goldenPayload...), 0), err: ErrMalformed},
		{name: "varint too long", payload: header().raw(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), err: ErrMalformed},
		{name: "varint tenth byte overflows", payload: header().str("").raw(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02).long(0).long(0), err: ErrMalformed},
		{name: "negative string length", payload: header().long(-1), err: ErrMalformed},
		{name: "string longer than payload", payload: header().long(1 << 40).raw('x'), err: ErrMalformed},
		{name: "huge record count", payload: header().batch("", 0, 0).long(math.MaxInt64), err: ErrMalformed},
		{name: "more records than bytes", payload: header().batch("", 0, 0).long(3).minimalRecord("").rest().long(0), err: ErrMalformed},
		{name: "min long block count", payload: header().batch("", 0, 0).long(math.MinInt64).long(0), err: ErrMalformed},
		{name: "block size negative", payload: header().batch("", 0, 0).long(-1).long(-5).minimalRecord("").rest().long(0), err: ErrMalformed},
		{name: "block size wrong", payload: header().batch("", 0, 0).long(-1).long(11).minimalRecord("").rest().long(0), err: ErrMalformed},
		{name: "union branch 6", payload: rec.str("").str("d").str("t").long(6).rest().long(0), err: ErrMalformed},
		{name: "union branch negative", payload: rec.str("").str("d").str("t").long(-1).rest().long(0), err: ErrMalformed},
		{name: "boolean byte 2", payload: rec.str("").str("d").str("t").long(1).raw(2).rest().long(0), err: ErrMalformed},
		{name: "double cut", payload: rec.str("").str("d").str("t").long(3).raw(0, 0, 0), err: ErrMalformed},
		{name: "quality 3", payload: rec.minimalRecord("").long(3).long(0).long(0).long(0).str("").long(0).long(0).long(0), err: ErrMalformed},
		{name: "status negative", payload: rec.minimalRecord("").long(0).long(-1).long(0).long(0).str("").long(0).long(0).long(0), err: ErrMalformed},
		{name: "status above uint32", payload: rec.minimalRecord("").long(0).long(math.MaxUint32 + 1).long(0).long(0).str("").long(0).long(0).long(0), err: ErrMalformed},
		{name: "time past 2262", payload: header().batch("", maxMicros, 0).long(1).minimalRecord("").long(0).long(0).long(1).long(0).str("").long(0).long(0).long(0), err: ErrMalformed},
		{name: "time offset overflows", payload: header().batch("", math.MaxInt64, 0).long(1).minimalRecord("").long(0).long(0).long(math.MaxInt64).long(0).str("").long(0).long(0).long(0), err: ErrMalformed},
		{name: "attr count beyond payload", payload: rec.minimalRecord("").long(0).long(0).long(0).long(0).str("").long(0).long(1000).long(0), err: ErrMalformed},
		{name: "attr value cut", payload: rec.minimalRecord("").long(0).long(0).long(0).long(0).str("").long(0).long(1).str("k").long(5).raw('v'), err: ErrMalformed},
	}
}

func payloadFixtures() []payloadFixture {
	return append(validFixtures(), malformedFixtures()...)
}

// Batches for round trips through the codec. Times are whole microseconds
// unless a case is about truncation.
var (
	t0  = time.Date(2025, 11, 24, 15, 44, 0, 123_456_000, time.UTC).UnixNano()
	mib = strings.Repeat("ü€𝄞x", 1<<20/10) // 1 MiB-ish of multi-byte UTF-8
)

func one(r Record) *Batch { return &Batch{Records: []Record{r}} }

func rec(v Value) Record {
	return Record{Source: "plc1", Device: "press-01", Tag: "line1/temperature", Value: v, SourceTime: t0 - 3e6, IngestTime: t0, Seq: 1}
}

type batchCase struct {
	name  string
	batch *Batch
}

func roundTripCases() []batchCase {
	cases := []batchCase{
		{"zero records", &Batch{}},
		{"null", one(rec(Null()))},
		{"bool true", one(rec(Bool(true)))},
		{"bool false", one(rec(Bool(false)))},
		{"long 0", one(rec(Long(0)))},
		{"long max", one(rec(Long(math.MaxInt64)))},
		{"long min", one(rec(Long(math.MinInt64)))},
		{"double", one(rec(Double(21.5)))},
		{"double max", one(rec(Double(math.MaxFloat64)))},
		{"double -max", one(rec(Double(-math.MaxFloat64)))},
		{"double smallest denormal", one(rec(Double(math.SmallestNonzeroFloat64)))},
		{"double NaN", one(rec(Double(math.NaN())))},
		{"double +Inf", one(rec(Double(math.Inf(1))))},
		{"double -Inf", one(rec(Double(math.Inf(-1))))},
		{"double -0", one(rec(Double(math.Copysign(0, -1))))},
		{"string empty", one(rec(String("")))},
		{"string unicode", one(rec(String("Grüße, 温度 🌡️ \u2028 \x00 \"q\" \\")))},
		{"string 1 MiB", one(rec(String(mib)))},
		{"bytes empty", one(rec(Bytes(nil)))},
		{"bytes binary", one(rec(Bytes([]byte{0, 1, 0x7f, 0x80, 0xfe, 0xff})))},
		{"bytes 1 MiB", one(rec(Bytes([]byte(mib))))},
		{"all empty strings", one(Record{})},
		{"long names", one(Record{Source: strings.Repeat("s", 300), Device: strings.Repeat("d", 1000), Tag: mib, Unit: strings.Repeat("u", 257)})},
		{"unicode names", one(Record{Source: "ソース", Device: "Presse-Ü1", Tag: "línea/温度", Unit: "°C", Value: Double(1)})},
		{"status and quality", &Batch{Records: []Record{
			{Source: "opcua", Quality: Good, Status: 0},
			{Source: "opcua", Quality: Uncertain, Status: 0x40000000},
			{Source: "opcua", Quality: Bad, Status: math.MaxUint32},
		}}},
		{"attrs", one(Record{Source: "a", Attrs: map[string]string{"node": "ns=2;s=Line1.Temp", "": "empty key", "empty value": "", "ключ": "значение"}})},
		{"many attrs", one(Record{Source: "a", Attrs: manyAttrs(40)})},
		{"empty attrs map", one(Record{Source: "a", Attrs: map[string]string{}})},
		{"mixed sources", &Batch{Records: []Record{
			{Source: "plc1", Seq: 10}, {Source: "plc2", Seq: 3}, {Source: "plc1", Seq: 11},
		}}},
		{"an empty source among others", &Batch{Records: []Record{
			{Source: "plc1", Seq: 10}, {Source: "", Seq: 3}, {Source: "plc1", Seq: 11},
		}}},
		{"extreme times", &Batch{Records: []Record{
			{Source: "x", SourceTime: math.MinInt64 / 1000 * 1000, IngestTime: math.MaxInt64 / 1000 * 1000},
			{Source: "x", SourceTime: math.MaxInt64 / 1000 * 1000, IngestTime: math.MinInt64 / 1000 * 1000},
			{Source: "x", SourceTime: 0, IngestTime: -1000},
		}}},
		{"extreme seqs", &Batch{Records: []Record{
			{Source: "x", Seq: math.MaxUint64}, {Source: "x", Seq: 0}, {Source: "x", Seq: 1 << 63}, {Source: "x", Seq: math.MaxUint64 - 1},
		}}},
		{"typical 500", typicalBatch(500)},
		{"many varied", variedBatch(10_000)},
	}
	return cases
}

func manyAttrs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('0'+i/26))] = strings.Repeat("v", i)
	}
	return m
}

// typicalBatch is the telemetry fixture of the benchmarks: one PLC, one
// temperature tag, consecutive seqs, sampled a few ms before ingest.
func typicalBatch(n int) *Batch {
	b := &Batch{Records: make([]Record, n)}
	for i := range b.Records {
		ingest := t0 + int64(i)*10_000 // 10 µs apart
		b.Records[i] = Record{
			Source:     "plc1",
			Device:     "press-01",
			Tag:        "line1/temperature",
			Value:      Double(20 + float64(i%100)*0.137),
			Quality:    Good,
			SourceTime: ingest - 3_000_000 - int64(i%7)*100_000,
			IngestTime: ingest,
			Unit:       "°C",
			Seq:        1_000_000 + uint64(i),
		}
	}
	return b
}

// variedBatch mixes devices, tags, kinds, sources and attrs, as a busy
// gateway's router output would.
func variedBatch(n int) *Batch {
	kinds := []func(i int) Value{
		func(int) Value { return Null() },
		func(i int) Value { return Bool(i%2 == 0) },
		func(i int) Value { return Long(int64(i) * -7919) },
		func(i int) Value { return Double(float64(i) / 3) },
		func(i int) Value { return String(strings.Repeat("s", i%40)) },
		func(i int) Value { return Bytes([]byte(strings.Repeat("\x01", i%5))) },
	}
	b := &Batch{Records: make([]Record, n)}
	for i := range b.Records {
		r := Record{
			Source:     []string{"plc1", "opcua", "legacy"}[i%3],
			Device:     "dev-" + string(rune('A'+i%20)),
			Tag:        "area/line/" + string(rune('a'+i%26)) + "/value",
			Value:      kinds[i%len(kinds)](i),
			Quality:    Quality(i % 3),
			Status:     uint32(i * 65_537),
			SourceTime: t0 + int64(i)*1_000_000 - int64(i%11)*1e9,
			IngestTime: t0 + int64(i)*1_000_000,
			Unit:       []string{"", "°C", "bar", "rpm"}[i%4],
			Seq:        uint64(i / 3),
		}
		if i%5 == 0 {
			r.Attrs = map[string]string{"batch": "b" + string(rune('0'+i%10)), "shift": "night"}
		}
		b.Records[i] = r
	}
	return b
}
