package bus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// onWire is what a record becomes after a trip over the wire: times keep
// whole microseconds (truncated towards zero), and no attributes is nil.
func onWire(r Record) Record {
	r.SourceTime = r.SourceTime / 1000 * 1000
	r.IngestTime = r.IngestTime / 1000 * 1000
	if len(r.Attrs) == 0 {
		r.Attrs = nil
	}
	return r
}

func onWireAll(rs []Record) []Record {
	out := make([]Record, len(rs))
	for i, r := range rs {
		out[i] = onWire(r)
	}
	return out
}

func recordEqual(a, b Record) bool {
	return a.Source == b.Source && a.Device == b.Device && a.Tag == b.Tag &&
		a.Value.Equal(b.Value) && a.Quality == b.Quality && a.Status == b.Status &&
		a.SourceTime == b.SourceTime && a.IngestTime == b.IngestTime &&
		a.Unit == b.Unit && a.Seq == b.Seq && maps.Equal(a.Attrs, b.Attrs)
}

// diffRecords describes the first difference, or returns "".
func diffRecords(got, want []Record) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !recordEqual(got[i], want[i]) {
			return fmt.Sprintf("record %d:\n got  %s\n want %s", i, short(got[i]), short(want[i]))
		}
	}
	return ""
}

func short(r Record) string {
	s := fmt.Sprintf("%+v", r)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func TestGoldenPayload(t *testing.T) {
	if got := (&Batch{Records: goldenRecords}).AppendAvro(nil); !bytes.Equal(got, goldenPayload) {
		t.Errorf("encode:\n got  % x\n want % x", got, goldenPayload)
	}
	var b Batch
	if err := DecodeBatch(goldenPayload, &b); err != nil {
		t.Fatal(err)
	}
	if d := diffRecords(b.Records, goldenRecords); d != "" {
		t.Error(d)
	}
}

// rabinSpec is CRC-64-AVRO as the Avro specification writes it, kept apart
// from goavro's so that a bug there cannot move the published fingerprint.
func rabinSpec(buf []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	var table [256]uint64
	for i := range table {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		table[i] = fp
	}
	fp := uint64(empty)
	for _, c := range buf {
		fp = (fp >> 8) ^ table[byte(fp)^c]
	}
	return fp
}

// wantCanonical is the Parsing Canonical Form of batch.v1 written out from
// the specification's rules. goavro 2.15 gets some schemas' forms wrong (it
// repeats an explicit namespace on nested types, and keeps {"type":"long"}
// for a long with a logicalType); this pins that ours is not one of them.
const wantCanonical = `{"name":"ferry.Batch","type":"record","fields":[{"name":"source","type":"string"},{"name":"base_time","type":"long"},{"name":"seq_base","type":"long"},{"name":"records","type":{"type":"array","items":{"name":"ferry.Record","type":"record","fields":[{"name":"source","type":["null","string"]},{"name":"device","type":["null","string"]},{"name":"tag","type":["null","string",{"name":"ferry.TagSuffix","type":"record","fields":[{"name":"keep","type":"long"},{"name":"suffix","type":"string"}]}]},{"name":"value","type":["null","boolean","long","double","string","bytes"]},{"name":"quality","type":{"name":"ferry.Quality","type":"enum","symbols":["GOOD","UNCERTAIN","BAD"]}},{"name":"status","type":"long"},{"name":"time_delta","type":"long"},{"name":"ingest_delta","type":"long"},{"name":"unit","type":["null","string"]},{"name":"seq_gap","type":"long"},{"name":"attrs","type":{"type":"map","values":"string"}}]}}}]}`

func TestFingerprint(t *testing.T) {
	if got := CanonicalSchema(); got != wantCanonical {
		t.Errorf("canonical form:\n got  %s\n want %s", got, wantCanonical)
	}
	if got, want := Fingerprint(), rabinSpec([]byte(wantCanonical)); got != want {
		t.Errorf("Fingerprint() = %016x, the specification's algorithm gives %016x", got, want)
	}
	if Fingerprint() != pinnedFingerprint {
		t.Errorf("Fingerprint() = %016x, pinned %016x: a change to the wire format needs batch.v2.avsc and a new content type", Fingerprint(), uint64(pinnedFingerprint))
	}
	if got := FingerprintHex(); got != "999880cf6deafcda" {
		t.Errorf("FingerprintHex() = %q", got)
	}
}

// TestSchemaMatchesRecord ties the .avsc to record.go: the union order is
// Kind's, the enum is Quality's, and every field says what it is.
func TestSchemaMatchesRecord(t *testing.T) {
	type field struct {
		Name string          `json:"name"`
		Doc  string          `json:"doc"`
		Type json.RawMessage `json:"type"`
	}
	type record struct {
		Name   string  `json:"name"`
		Doc    string  `json:"doc"`
		Fields []field `json:"fields"`
	}
	var batch record
	if err := json.Unmarshal([]byte(Schema()), &batch); err != nil {
		t.Fatal(err)
	}
	var arr struct {
		Items record `json:"items"`
	}
	for _, f := range batch.Fields {
		if f.Name == "records" {
			if err := json.Unmarshal(f.Type, &arr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if arr.Items.Name != "Record" {
		t.Fatalf("records items = %q", arr.Items.Name)
	}
	var suffix record
	for _, f := range arr.Items.Fields {
		if f.Name == "tag" {
			var branches []json.RawMessage
			if err := json.Unmarshal(f.Type, &branches); err != nil || len(branches) != 3 {
				t.Fatalf("tag union %s: %v", f.Type, err)
			}
			if err := json.Unmarshal(branches[2], &suffix); err != nil {
				t.Fatal(err)
			}
		}
	}
	if suffix.Name != "TagSuffix" || len(suffix.Fields) != 2 {
		t.Fatalf("tag union's third branch is %q with %d fields", suffix.Name, len(suffix.Fields))
	}
	for _, r := range []record{batch, arr.Items, suffix} {
		if r.Doc == "" {
			t.Errorf("%s has no doc", r.Name)
		}
		for _, f := range r.Fields {
			if f.Doc == "" {
				t.Errorf("%s.%s has no doc", r.Name, f.Name)
			}
			switch f.Name {
			case "value":
				var branches []string
				if err := json.Unmarshal(f.Type, &branches); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(branches, kindNames[:]) {
					t.Errorf("value union %v, Kind order %v", branches, kindNames)
				}
			case "quality":
				var enum struct{ Symbols []string }
				if err := json.Unmarshal(f.Type, &enum); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(enum.Symbols, qualityNames[:]) {
					t.Errorf("quality symbols %v, Quality names %v", enum.Symbols, qualityNames)
				}
			}
		}
	}
}

func TestPayloadFixtures(t *testing.T) {
	sentinel := Record{Source: "already there"}
	for _, fx := range payloadFixtures() {
		t.Run(fx.name, func(t *testing.T) {
			var d Decoder
			b := Batch{Records: []Record{sentinel}}
			err := d.Decode(fx.payload, &b)
			if fx.err != nil {
				if !errors.Is(err, fx.err) {
					t.Fatalf("err = %v, want %v", err, fx.err)
				}
				if !strings.HasPrefix(err.Error(), "bus: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				if d := diffRecords(b.Records, []Record{sentinel}); d != "" {
					t.Errorf("failed decode changed the batch: %s", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffRecords(b.Records, append([]Record{sentinel}, fx.want...)); d != "" {
				t.Error(d)
			}
			checkReencode(t, b.Records[1:])
		})
	}
}

// TestErrorsSayWhere checks that an error names the record, field and byte.
func TestErrorsSayWhere(t *testing.T) {
	p := header().batch("s", 0, 0).long(2).minimalRecord("").rest().
		null().null().long(1).long(99).raw(make([]byte, 10)...)
	err := DecodeBatch(p, &Batch{})
	want := fmt.Sprintf("bus: decode record 1 field tag at byte %d: length 99 exceeds the 10 bytes left: malformed batch", len(p)-10)
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestRoundTrip(t *testing.T) {
	var d Decoder // one decoder for all, as a subscriber would
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			p := c.batch.AppendAvro(nil)
			var b Batch
			if err := d.Decode(p, &b); err != nil {
				t.Fatal(err)
			}
			if diff := diffRecords(b.Records, onWireAll(c.batch.Records)); diff != "" {
				t.Error(diff)
			}
			if again := c.batch.AppendAvro(nil); !bytes.Equal(p, again) {
				t.Error("encoding the same batch twice gave different bytes")
			}
		})
	}
}

func TestEncodeEdges(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Record
		want Record
	}{
		{"sub-µs truncated", Record{SourceTime: 1_999, IngestTime: 2_000_001}, Record{SourceTime: 1_000, IngestTime: 2_000_000}},
		{"negative sub-µs truncated towards zero", Record{SourceTime: -1_999, IngestTime: -1}, Record{SourceTime: -1_000, IngestTime: 0}},
		{"unknown quality sent as BAD", Record{Quality: 9}, Record{Quality: Bad}},
		{"unknown kind sent as null", Record{Value: Value{Kind: 42, num: 1, str: "x"}}, Record{}},
		{"bool with stray bits", Record{Value: Value{Kind: KindBool, num: 6}}, Record{Value: Bool(true)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b Batch
			if err := DecodeBatch(one(c.in).AppendAvro(nil), &b); err != nil {
				t.Fatal(err)
			}
			if d := diffRecords(b.Records, []Record{c.want}); d != "" {
				t.Error(d)
			}
		})
	}
}

// toNative builds goavro's form of a batch, following the schema's docs
// (including the choices they say ferry makes), independently of AppendAvro.
func toNative(b *Batch) map[string]any {
	if len(b.Records) == 0 {
		return map[string]any{"source": "", "base_time": int64(0), "seq_base": int64(0), "records": []any{}}
	}
	first := b.Records[0]
	base := first.IngestTime / 1000
	prev := Record{Source: first.Source, SourceTime: base, IngestTime: base, Seq: first.Seq - 1} // times in µs
	same := func(s string, prev *string) any {
		if s == *prev {
			return nil
		}
		*prev = s
		return goavro.Union("string", s)
	}
	recs := make([]any, len(b.Records))
	for i, r := range b.Records {
		var v any
		switch r.Value.Kind {
		case KindBool:
			v = goavro.Union("boolean", r.Value.Bool())
		case KindLong:
			v = goavro.Union("long", r.Value.Long())
		case KindDouble:
			v = goavro.Union("double", r.Value.Double())
		case KindString:
			v = goavro.Union("string", r.Value.Str())
		case KindBytes:
			v = goavro.Union("bytes", r.Value.Bytes())
		}
		attrs := map[string]any{}
		for k, a := range r.Attrs {
			attrs[k] = a
		}
		src := same(r.Source, &prev.Source)
		dev := same(r.Device, &prev.Device)
		tag := nativeTag(r.Tag, prev.Tag)
		prev.Tag = r.Tag
		unit := same(r.Unit, &prev.Unit)
		st, it := r.SourceTime/1000, r.IngestTime/1000
		recs[i] = map[string]any{
			"source":       src,
			"device":       dev,
			"tag":          tag,
			"value":        v,
			"quality":      r.Quality.String(),
			"status":       int64(r.Status),
			"time_delta":   st - prev.SourceTime,
			"ingest_delta": it - prev.IngestTime,
			"unit":         unit,
			"seq_gap":      int64(r.Seq - prev.Seq - 1),
			"attrs":        attrs,
		}
		prev.SourceTime, prev.IngestTime, prev.Seq = st, it, r.Seq
	}
	return map[string]any{"source": first.Source, "base_time": base, "seq_base": int64(first.Seq), "records": recs}
}

// nativeTag is the tag union as the schema's docs say ferry writes it.
func nativeTag(tag, prev string) any {
	if tag == prev {
		return nil
	}
	keep := 0
	for keep < len(tag) && keep < len(prev) && tag[keep] == prev[keep] {
		keep++
	}
	for keep < len(tag) && tag[keep]&0xC0 == 0x80 { // no cut before a continuation byte
		keep--
	}
	longLen := func(n int) int { return len(binary.AppendVarint(nil, int64(n))) }
	if keep > 0 && longLen(keep)+longLen(len(tag)-keep)+len(tag)-keep < longLen(len(tag))+len(tag) {
		return goavro.Union("ferry.TagSuffix", map[string]any{"keep": int64(keep), "suffix": tag[keep:]})
	}
	return goavro.Union("string", tag)
}

func fromNative(native any) ([]Record, error) {
	m := native.(map[string]any)
	base := m["base_time"].(int64)
	prev := Record{Source: m["source"].(string), SourceTime: base, IngestTime: base, Seq: uint64(m["seq_base"].(int64)) - 1} // times in µs
	same := func(u any, prev *string) string {
		if u != nil {
			*prev = u.(map[string]any)["string"].(string)
		}
		return *prev
	}
	var out []Record
	for _, item := range m["records"].([]any) {
		rm := item.(map[string]any)
		q, err := ParseQuality(rm["quality"].(string))
		if err != nil {
			return nil, err
		}
		switch u := rm["tag"].(type) {
		case nil:
		case map[string]any:
			if s, ok := u["string"]; ok {
				prev.Tag = s.(string)
			} else {
				ts := u["ferry.TagSuffix"].(map[string]any)
				keep := ts["keep"].(int64)
				if keep < 0 || keep > int64(len(prev.Tag)) {
					return nil, fmt.Errorf("TagSuffix keep %d of %q", keep, prev.Tag)
				}
				prev.Tag = prev.Tag[:keep] + ts["suffix"].(string)
			}
		}
		prev.SourceTime += rm["time_delta"].(int64)
		prev.IngestTime += rm["ingest_delta"].(int64)
		prev.Seq += 1 + uint64(rm["seq_gap"].(int64))
		r := Record{
			Source:     same(rm["source"], &prev.Source),
			Device:     same(rm["device"], &prev.Device),
			Tag:        prev.Tag,
			Quality:    q,
			Status:     uint32(rm["status"].(int64)),
			SourceTime: prev.SourceTime * 1000,
			IngestTime: prev.IngestTime * 1000,
			Unit:       same(rm["unit"], &prev.Unit),
			Seq:        prev.Seq,
		}
		if u, ok := rm["value"].(map[string]any); ok {
			for branch, x := range u {
				switch branch {
				case "boolean":
					r.Value = Bool(x.(bool))
				case "long":
					r.Value = Long(x.(int64))
				case "double":
					r.Value = Double(x.(float64))
				case "string":
					r.Value = String(x.(string))
				case "bytes":
					r.Value = Bytes(x.([]byte))
				}
			}
		}
		for k, v := range rm["attrs"].(map[string]any) {
			if r.Attrs == nil {
				r.Attrs = map[string]string{}
			}
			r.Attrs[k] = v.(string)
		}
		out = append(out, r)
	}
	return out, nil
}

func TestCrossCheckGoavro(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			want := onWireAll(c.batch.Records)
			ours := c.batch.AppendAvro(nil)

			native, rest, err := avroCodec.NativeFromSingle(ours)
			if err != nil {
				t.Fatalf("goavro cannot decode our bytes: %v", err)
			}
			if len(rest) != 0 {
				t.Fatalf("goavro left %d bytes", len(rest))
			}
			got, err := fromNative(native)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffRecords(got, want); d != "" {
				t.Errorf("ours → goavro: %s", d)
			}

			theirs, err := avroCodec.SingleFromNative(nil, toNative(c.batch))
			if err != nil {
				t.Fatalf("goavro cannot encode: %v", err)
			}
			var b Batch
			if err := DecodeBatch(theirs, &b); err != nil {
				t.Fatalf("goavro → ours: %v", err)
			}
			if d := diffRecords(b.Records, want); d != "" {
				t.Errorf("goavro → ours: %s", d)
			}

			// goavro writes map entries in Go's random order, so bytes can be
			// compared only where no record has two attributes.
			if !slices.ContainsFunc(c.batch.Records, func(r Record) bool { return len(r.Attrs) > 1 }) && !bytes.Equal(ours, theirs) {
				t.Errorf("bytes differ from goavro's:\n ours   % x\n theirs % x", head(ours), head(theirs))
			}
		})
	}
}

func head(p []byte) []byte {
	if len(p) > 200 {
		return p[:200]
	}
	return p
}

func TestTruncated(t *testing.T) {
	payloads := map[string][]byte{
		"golden":  goldenPayload,
		"typical": typicalBatch(20).AppendAvro(nil),
		"one tag": oneTagBatch(20).AppendAvro(nil),
		"varied":  variedBatch(30).AppendAvro(nil),
	}
	for name, p := range payloads {
		t.Run(name, func(t *testing.T) {
			var d Decoder
			for i := range len(p) {
				var b Batch
				err := d.Decode(p[:i], &b)
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%d of %d bytes: err = %v, want ErrMalformed", i, len(p), err)
				}
				if b.Len() != 0 {
					t.Fatalf("%d of %d bytes: %d records left in the batch", i, len(p), b.Len())
				}
			}
		})
	}
}

// TestCorrupted flips every byte of a valid payload in turn: decoding must
// fail cleanly or give records that survive another round trip.
func TestCorrupted(t *testing.T) {
	p := variedBatch(12).AppendAvro(nil)
	var d Decoder
	for i := range p {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			q := bytes.Clone(p)
			q[i] ^= mask
			checkDecode(t, &d, q)
		}
	}
}

func TestRandomBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d Decoder
	for i := range 20_000 {
		p := make([]byte, rng.IntN(120))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			p = append(bytes.Clone(header()), p...)
		}
		checkDecode(t, &d, p)
	}
}

// checkDecode is the property FuzzDecode checks: a payload either fails with
// one of the sentinels and leaves the batch alone, or decodes to records
// that encode and decode to themselves and render as valid JSON.
func checkDecode(t testing.TB, d *Decoder, p []byte) {
	t.Helper()
	var b Batch
	err := d.Decode(p, &b)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSchemaMismatch) {
			t.Fatalf("error wraps neither sentinel: %v", err)
		}
		if b.Len() != 0 {
			t.Fatalf("failed decode left %d records", b.Len())
		}
		return
	}
	checkReencode(t, b.Records)
	for line := range bytes.Lines(b.AppendJSONLines(nil)) {
		if !json.Valid(line) {
			t.Fatalf("invalid JSON line %q", line)
		}
	}
}

func checkReencode(t testing.TB, recs []Record) {
	t.Helper()
	p := (&Batch{Records: recs}).AppendAvro(nil)
	var b Batch
	if err := DecodeBatch(p, &b); err != nil {
		t.Fatalf("re-encoded batch does not decode: %v", err)
	}
	if d := diffRecords(b.Records, recs); d != "" {
		t.Fatalf("re-encoded batch decodes differently: %s", d)
	}
}

func FuzzDecode(f *testing.F) {
	for _, fx := range payloadFixtures() {
		f.Add(fx.payload)
	}
	f.Add(typicalBatch(3).AppendAvro(nil))
	f.Add(oneTagBatch(3).AppendAvro(nil))
	f.Add(variedBatch(7).AppendAvro(nil))
	var d Decoder
	f.Fuzz(func(t *testing.T, p []byte) {
		checkDecode(t, &d, p)
	})
}

// TestInternTable decodes more distinct names than the table holds, then the
// first ones again: strings must stay right while slots are evicted.
func TestInternTable(t *testing.T) {
	n := internMax * 3
	big := &Batch{Records: make([]Record, n)}
	for i := range big.Records {
		big.Records[i] = Record{Source: "s", Device: fmt.Sprintf("dev%d", i%97), Tag: fmt.Sprintf("tag/%d", i), Attrs: map[string]string{fmt.Sprint(i % 13): fmt.Sprint(i)}}
	}
	var d Decoder
	for range 2 {
		for _, b := range []*Batch{big, variedBatch(100), typicalBatch(10), typicalBatch(internMax + 1)} {
			var got Batch
			if err := d.Decode(b.AppendAvro(nil), &got); err != nil {
				t.Fatal(err)
			}
			if diff := diffRecords(got.Records, onWireAll(b.Records)); diff != "" {
				t.Fatal(diff)
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	typical := typicalBatch(500)
	attrs := &Batch{Records: []Record{{Source: "a", Attrs: manyAttrs(16)}, {Source: "b", Attrs: manyAttrs(3)}}}
	buf := make([]byte, 0, 1<<20)
	for name, b := range map[string]*Batch{"typical": typical, "attrs": attrs} {
		if n := testing.AllocsPerRun(50, func() { buf = b.AppendAvro(buf[:0]) }); n != 0 {
			t.Errorf("AppendAvro %s: %v allocs, want 0", name, n)
		}
	}
	if n := testing.AllocsPerRun(50, func() { buf = typical.AppendJSONLines(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSONLines: %v allocs, want 0", n)
	}

	p := typical.AppendAvro(nil)
	var d Decoder
	var b Batch
	if n := testing.AllocsPerRun(50, func() {
		b.Reset()
		if err := d.Decode(p, &b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("steady-state Decode of a typical batch: %v allocs, want 0", n)
	}
}

// TestWireSize pins the budget the bus is sized by: a record of a typical
// poll cycle, every record a different tag, takes at most 40 bytes and at
// most 0.4 of its JSON line.
func TestWireSize(t *testing.T) {
	for name, b := range map[string]*Batch{"typical": typicalBatch(benchBatchLen), "one tag": oneTagBatch(benchBatchLen)} {
		avro := float64(len(b.AppendAvro(nil))) / float64(b.Len())
		json := float64(len(b.AppendJSONLines(nil))) / float64(b.Len())
		t.Logf("%s: %.2f bytes/record, %.3f of JSON's %.1f", name, avro, avro/json, json)
		if avro > 40 || avro > 0.4*json {
			t.Errorf("%s: %.2f bytes/record (JSON %.1f), want at most 40 and at most 0.4 of JSON", name, avro, json)
		}
	}
}

// TestTagCoding checks the choice between null, string and TagSuffix.
func TestTagCoding(t *testing.T) {
	for _, c := range []struct {
		prev, tag string
		want      wire
	}{
		{"a", "a", wire(nil).null()},
		{"", "", wire(nil).null()},
		{"a", "", wire(nil).ustr("")},
		{"", "abc", wire(nil).ustr("abc")},
		{"t1", "t2", wire(nil).ustr("t2")},          // TagSuffix{1, "2"} would be as long
		{"ab1", "ab2", wire(nil).tagSuffix(2, "2")}, // shorter by one
		{"ab/t1", "ab", wire(nil).tagSuffix(2, "")}, // a prefix of the previous
		{"line1/temperature9", "line1/temperature10", wire(nil).tagSuffix(17, "10")},
		{"xé", "xè", wire(nil).ustr("xè")}, // é and è share a byte: no cut there
		{"abcé", "abcè", wire(nil).tagSuffix(3, "è")},
		{"abc\xc3", "abc\xc3\xa9", wire(nil).tagSuffix(3, "\xc3\xa9")},
		{"abc\xc3\xa9", "abc\xc3", wire(nil).tagSuffix(4, "")},
		{strings.Repeat("x", 200) + "1", strings.Repeat("x", 200) + "2", wire(nil).tagSuffix(200, "2")},
	} {
		prev := c.prev
		if got := appendTag(nil, c.tag, &prev); !bytes.Equal(got, c.want) {
			t.Errorf("%q after %q: % x, want % x", c.tag, c.prev, got, []byte(c.want))
		}
		if prev != c.tag {
			t.Errorf("%q after %q: previous left as %q", c.tag, c.prev, prev)
		}
	}
}
