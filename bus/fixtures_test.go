package bus

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
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

// Unions of source, device, tag and unit: null (same as the previous
// record's), a string, or for the tag a TagSuffix.
func (w wire) null() wire                          { return w.long(0) }
func (w wire) ustr(s string) wire                  { return w.long(1).str(s) }
func (w wire) tagSuffix(keep int64, s string) wire { return w.long(2).long(keep).str(s) }

// pinnedFingerprint is the CRC-64-AVRO of batch.v1's canonical form. It may
// change only with a new schema file, content type and version.
const pinnedFingerprint = 0x999880cf6deafcda

// names writes source (null for "", meaning the previous record's), device
// "d" and tag "t"; minimalRecord adds a null value; rest finishes a record.
func (w wire) names(src string) wire {
	if src == "" {
		w = w.null()
	} else {
		w = w.ustr(src)
	}
	return w.ustr("d").ustr("t")
}
func (w wire) minimalRecord(src string) wire { return w.names(src).long(0) }
func (w wire) rest() wire {
	// quality GOOD, status 0, time_delta 0, ingest_delta 0, unit null,
	// seq_gap 0, no attrs
	return w.long(0).long(0).long(0).long(0).null().long(0).long(0)
}

// goldenPayload pins the wire format byte by byte.
var goldenPayload = []byte(header().raw(
	0x08, 'p', 'l', 'c', '1', // batch source "plc1"
	0xD0, 0x0F, // base_time 1000 µs
	0x0A, // seq_base 5
	0x04, // two records
	// record 0
	0x00,            // source null: the batch's
	0x02, 0x02, 'd', // device "d"
	0x02, 0x0A, 'a', 'b', '/', 't', '1', // tag "ab/t1"
	0x06, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, // value: double 1.5
	0x00,            // GOOD
	0x00,            // status 0
	0x01,            // time_delta -1 µs from base_time
	0x00,            // ingest_delta 0 from base_time
	0x02, 0x02, 'V', // unit "V"
	0x00,                             // seq_gap 0: seq_base
	0x02, 0x02, 'k', 0x02, 'v', 0x00, // attrs {k: v}
	// record 1
	0x00,                  // source null: plc1
	0x00,                  // device null: d
	0x04, 0x08, 0x02, '2', // tag TagSuffix{keep 4, "2"}: ab/t2
	0x02, 0x01, // value: boolean true
	0x02, // UNCERTAIN
	0x06, // status 3
	0x04, // time_delta +2 µs
	0x06, // ingest_delta +3 µs
	0x00, // unit null: V
	0x02, // seq_gap 1: seq 5+1+1
	0x00, // no attrs
	0x00, // end of records
))

var goldenRecord = Record{
	Source: "plc1", Device: "d", Tag: "ab/t1", Value: Double(1.5), Quality: Good,
	SourceTime: 999_000, IngestTime: 1_000_000, Unit: "V", Seq: 5,
	Attrs: map[string]string{"k": "v"},
}

var goldenRecords = []Record{goldenRecord, {
	Source: "plc1", Device: "d", Tag: "ab/t2", Value: Bool(true), Quality: Uncertain, Status: 3,
	SourceTime: 1_001_000, IngestTime: 1_003_000, Unit: "V", Seq: 7,
}}

func validFixtures() []payloadFixture {
	simple := func(src string, seq uint64) Record {
		return Record{Source: src, Device: "d", Tag: "t", Seq: seq}
	}
	plain := wire(nil).minimalRecord("").rest()
	return []payloadFixture{
		{name: "golden", payload: goldenPayload, want: goldenRecords},
		{name: "no records", payload: header().batch("", 0, 0).long(0)},
		{
			name:    "negative block count with byte size",
			payload: header().batch("s", 0, 0).long(-2).long(int64(2 * len(plain))).raw(plain...).raw(plain...).long(0),
			want:    []Record{simple("s", 0), simple("s", 1)},
		},
		{
			name: "several blocks, coded across them",
			payload: header().batch("s", 0, 10).long(1).minimalRecord("").rest().
				long(1).minimalRecord("o").rest().
				long(1).null().null().null().long(0).long(0).long(0).long(-1).long(-1).null().long(1).long(0).
				long(0),
			want: []Record{simple("s", 10), simple("o", 11), {Source: "o", Device: "d", Tag: "t", SourceTime: -1000, IngestTime: -1000, Seq: 13}},
		},
		{
			name: "null on the first record",
			payload: header().batch("s", 0, 0).long(1).
				null().null().null().long(0).long(0).long(0).long(0).long(0).null().long(0).long(0).
				long(0),
			want: []Record{{Source: "s"}},
		},
		{
			name: "strings equal to the previous written out",
			payload: header().batch("s", 0, 0).long(2).
				ustr("s").ustr("d").ustr("t").long(0).long(0).long(0).long(0).long(0).ustr("u").long(0).long(0).
				ustr("s").ustr("d").ustr("t").long(0).long(0).long(0).long(0).long(0).ustr("u").long(0).long(0).
				long(0),
			want: []Record{
				{Source: "s", Device: "d", Tag: "t", Unit: "u"},
				{Source: "s", Device: "d", Tag: "t", Unit: "u", Seq: 1},
			},
		},
		{
			name: "empty strings after others",
			payload: header().batch("s", 0, 0).long(2).
				minimalRecord("").long(0).long(0).long(0).long(0).ustr("u").long(0).long(0).
				ustr("").ustr("").ustr("").long(0).long(0).long(0).long(0).long(0).ustr("").long(0).long(0).
				long(0),
			want: []Record{
				{Source: "s", Device: "d", Tag: "t", Unit: "u"},
				{Seq: 1},
			},
		},
		{
			name: "tag suffixes",
			payload: header().batch("s", 0, 0).long(6).
				null().ustr("d").tagSuffix(0, "a/b").long(0).rest().   // from the empty string
				null().null().tagSuffix(2, "xy").long(0).rest().       // a/xy
				null().null().tagSuffix(4, "").long(0).rest().         // a/xy, all kept
				null().null().tagSuffix(1, "").long(0).rest().         // a, cut
				null().null().tagSuffix(0, "ü€").long(0).rest().       // nothing kept
				null().null().tagSuffix(3, "\x82\xac").long(0).rest(). // cut inside a character: bytes are bytes
				long(0),
			want: []Record{
				{Source: "s", Device: "d", Tag: "a/b", Seq: 0},
				{Source: "s", Device: "d", Tag: "a/xy", Seq: 1},
				{Source: "s", Device: "d", Tag: "a/xy", Seq: 2},
				{Source: "s", Device: "d", Tag: "a", Seq: 3},
				{Source: "s", Device: "d", Tag: "ü€", Seq: 4},
				{Source: "s", Device: "d", Tag: "ü\xe2\x82\xac", Seq: 5},
			},
		},
		{
			name: "attrs in blocks, one with a byte size",
			payload: header().batch("s", 0, 0).long(1).minimalRecord("").
				long(0).long(0).long(0).long(0).null().long(0).
				long(1).str("a").str("1").long(-1).long(4).str("b").str("2").long(0).
				long(0),
			want: []Record{{Source: "s", Device: "d", Tag: "t", Attrs: map[string]string{"a": "1", "b": "2"}}},
		},
		{
			name: "every kind and quality",
			payload: header().batch("", 0, 0).long(6).
				minimalRecord("a").rest().
				null().null().null().long(1).raw(1).long(1).long(0).long(0).long(0).null().long(0).long(0).
				null().null().null().long(2).long(-7).long(2).long(0).long(0).long(0).null().long(0).long(0).
				null().null().null().double(-2.5).rest().
				null().null().null().long(4).str("ok").rest().
				null().null().null().long(5).str("\x00\xff").rest().
				long(0),
			want: []Record{
				simple("a", 0),
				{Source: "a", Device: "d", Tag: "t", Value: Bool(true), Quality: Uncertain, Seq: 1},
				{Source: "a", Device: "d", Tag: "t", Value: Long(-7), Quality: Bad, Seq: 2},
				{Source: "a", Device: "d", Tag: "t", Value: Double(-2.5), Seq: 3},
				{Source: "a", Device: "d", Tag: "t", Value: String("ok"), Seq: 4},
				{Source: "a", Device: "d", Tag: "t", Value: Bytes([]byte{0, 0xff}), Seq: 5},
			},
		},
		{
			name: "extreme times, seq and status",
			payload: header().batch("s", maxMicros, -1).long(2).
				minimalRecord("").long(0).long(math.MaxUint32).long(minMicros - maxMicros).long(0).null().long(1).long(0).
				null().null().null().long(0).long(0).long(0).long(maxMicros - minMicros).long(minMicros - maxMicros).null().long(-1).long(0).
				long(0),
			want: []Record{{
				Source: "s", Device: "d", Tag: "t", Status: math.MaxUint32,
				SourceTime: minMicros * 1000, IngestTime: maxMicros * 1000, Seq: 0, // MaxUint64 + 1 wraps
			}, {
				Source: "s", Device: "d", Tag: "t",
				SourceTime: maxMicros * 1000, IngestTime: minMicros * 1000, Seq: 0, // 0 + 1 + MaxUint64 wraps
			}},
		},
		{
			name: "base_time out of range, times in",
			payload: header().batch("s", math.MaxInt64, 0).long(1).
				minimalRecord("").long(0).long(0).long(-math.MaxInt64).long(maxMicros - math.MaxInt64).null().long(0).long(0).
				long(0),
			want: []Record{{Source: "s", Device: "d", Tag: "t", SourceTime: 0, IngestTime: maxMicros * 1000}},
		},
	}
}

func malformedFixtures() []payloadFixture {
	// Prefixes that several fixtures append to, clipped so that no append
	// writes into another fixture's bytes.
	rec := slices.Clip(header().batch("s", 0, 0).long(1))
	// two records, the second ready for its tag
	rec2 := slices.Clip(header().batch("s", 0, 0).long(2).null().ustr("d").ustr("abc").long(0).rest().null().null())
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
		{name: "source union branch 2", payload: rec.long(2).str("x").ustr("d").ustr("t").long(0).rest().long(0), err: ErrMalformed},
		{name: "device union branch negative", payload: rec.null().long(-1).ustr("t").long(0).rest().long(0), err: ErrMalformed},
		{name: "tag union branch 3", payload: rec.null().ustr("d").long(3).str("t").long(0).rest().long(0), err: ErrMalformed},
		{name: "unit union branch 2", payload: rec.minimalRecord("").long(0).long(0).long(0).long(0).long(2).str("u").long(0).long(0).long(0), err: ErrMalformed},
		{name: "tag suffix keeps more than the previous tag", payload: rec2.tagSuffix(4, "").long(0).rest().long(0), err: ErrMalformed},
		{name: "tag suffix keeps from nothing", payload: rec.null().ustr("d").tagSuffix(1, "t").long(0).rest().long(0), err: ErrMalformed},
		{name: "tag suffix keep negative", payload: rec2.tagSuffix(-1, "x").long(0).rest().long(0), err: ErrMalformed},
		{name: "tag suffix cut", payload: rec2.long(2).long(1), err: ErrMalformed},
		{name: "union branch 6", payload: rec.names("").long(6).rest().long(0), err: ErrMalformed},
		{name: "union branch negative", payload: rec.names("").long(-1).rest().long(0), err: ErrMalformed},
		{name: "boolean byte 2", payload: rec.names("").long(1).raw(2).rest().long(0), err: ErrMalformed},
		{name: "double cut", payload: rec.names("").long(3).raw(0, 0, 0), err: ErrMalformed},
		{name: "quality 3", payload: rec.minimalRecord("").long(3).long(0).long(0).long(0).null().long(0).long(0).long(0), err: ErrMalformed},
		{name: "status negative", payload: rec.minimalRecord("").long(0).long(-1).long(0).long(0).null().long(0).long(0).long(0), err: ErrMalformed},
		{name: "status above uint32", payload: rec.minimalRecord("").long(0).long(math.MaxUint32 + 1).long(0).long(0).null().long(0).long(0).long(0), err: ErrMalformed},
		{name: "time past 2262", payload: header().batch("", maxMicros, 0).long(1).minimalRecord("").long(0).long(0).long(1).long(0).null().long(0).long(0).long(0), err: ErrMalformed},
		{name: "time delta overflows", payload: header().batch("", math.MaxInt64, 0).long(1).minimalRecord("").long(0).long(0).long(math.MaxInt64).long(0).null().long(0).long(0).long(0), err: ErrMalformed},
		{name: "ingest before 1678", payload: header().batch("", 0, 0).long(1).minimalRecord("").long(0).long(0).long(0).long(minMicros - 1).null().long(0).long(0).long(0), err: ErrMalformed},
		{
			name: "time deltas add up past 2262",
			payload: header().batch("", maxMicros-10, 0).long(2).
				minimalRecord("").long(0).long(0).long(6).long(0).null().long(0).long(0).
				null().null().null().long(0).long(0).long(0).long(6).long(0).null().long(0).long(0).
				long(0),
			err: ErrMalformed,
		},
		{
			name: "ingest deltas add up before 1678",
			payload: header().batch("", minMicros+10, 0).long(2).
				minimalRecord("").long(0).long(0).long(0).long(-6).null().long(0).long(0).
				null().null().null().long(0).long(0).long(0).long(0).long(-6).null().long(0).long(0).
				long(0),
			err: ErrMalformed,
		},
		{name: "attr count beyond payload", payload: rec.minimalRecord("").long(0).long(0).long(0).long(0).null().long(0).long(1000).long(0), err: ErrMalformed},
		{name: "attr value cut", payload: rec.minimalRecord("").long(0).long(0).long(0).long(0).null().long(0).long(1).str("k").long(5).raw('v'), err: ErrMalformed},
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
		{"one tag 500", oneTagBatch(500)},
		{"tags sharing prefixes", &Batch{Records: []Record{
			{Source: "s", Tag: "a/b/c"}, {Source: "s", Tag: "a/b"}, {Source: "s", Tag: "a"}, {Source: "s", Tag: ""},
			{Source: "s", Tag: "a/b/c/d"}, {Source: "s", Tag: "a/b/c/e"}, {Source: "s", Tag: "a/b/c/e"}, {Source: "s", Tag: "a/b/x"},
			{Source: "s", Tag: "line1/temperature9"}, {Source: "s", Tag: "line1/temperature10"}, {Source: "s", Tag: "line1/temperature1"},
		}}},
		{"tags sharing part of a character", &Batch{Records: []Record{
			{Tag: "zone/xé/1"}, {Tag: "zone/xè/1"}, {Tag: "zone/x\xc3"}, {Tag: "zone/x\xc3\xa9"}, {Tag: "温度/1"}, {Tag: "温泉/1"}, {Tag: "\xff\xfe"}, {Tag: "\xff\xfd"},
		}}},
		{"long tags sharing prefixes", &Batch{Records: []Record{
			{Tag: strings.Repeat("x", 250) + "/1"}, {Tag: strings.Repeat("x", 250) + "/22222"}, {Tag: strings.Repeat("x", 250) + "/2"},
			{Tag: strings.Repeat("x", 300) + "/1"}, {Tag: strings.Repeat("x", 300) + "/2"}, {Tag: mib + "1"}, {Tag: mib + "2"},
		}}},
		{"names change and change back", &Batch{Records: []Record{
			{Source: "a", Device: "d1", Tag: "t", Unit: "V"}, {Source: "b", Device: "d1", Tag: "t", Unit: ""},
			{Source: "a", Device: "d2", Tag: "t", Unit: "V"}, {Source: "a", Device: "", Tag: "", Unit: ""},
			{Source: "", Device: "d1", Tag: "t", Unit: "V"},
		}}},
		{"first record with empty names", &Batch{Records: []Record{{Seq: 7}, {Source: "s", Device: "d", Tag: "t", Unit: "u", Seq: 8}}}},
		{"seqs and times backwards", &Batch{Records: []Record{
			{Source: "s", Seq: 100, SourceTime: t0, IngestTime: t0},
			{Source: "s", Seq: 99, SourceTime: t0 - 5e9, IngestTime: t0 - 1e3},
			{Source: "s", Seq: 99, SourceTime: t0 + 5e12, IngestTime: t0 - 1e3},
			{Source: "s", Seq: 1 << 40, SourceTime: 0, IngestTime: 0},
		}}},
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

// typicalBatch is the telemetry fixture of the benchmarks: one poll cycle
// of n different tags of one PLC (line1/temperature0, line1/temperature1,
// …), one unit, consecutive seqs, received 10 µs apart and sampled 1 to 4 ms
// before, in no particular order.
func typicalBatch(n int) *Batch {
	b := &Batch{Records: make([]Record, n)}
	for i := range b.Records {
		ingest := t0 + int64(i)*10_000
		b.Records[i] = Record{
			Source:     "plc1",
			Device:     "press-01",
			Tag:        "line1/temperature" + strconv.Itoa(i),
			Value:      Double(20 + float64(i%100)*0.137),
			Quality:    Good,
			SourceTime: ingest - 1_000_000 - int64(i*7919%3001)*1000,
			IngestTime: ingest,
			Unit:       "°C",
			Seq:        1_000_000 + uint64(i),
		}
	}
	return b
}

// oneTagBatch is the earlier fixture, for comparison: n readings of one
// tag, sampled 3 to 3.6 ms before they were received.
func oneTagBatch(n int) *Batch {
	b := typicalBatch(n)
	for i := range b.Records {
		r := &b.Records[i]
		r.Tag = "line1/temperature"
		r.SourceTime = r.IngestTime - 3_000_000 - int64(i%7)*100_000
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
