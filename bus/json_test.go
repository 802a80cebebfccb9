package bus

import (
	"bytes"
	"encoding/json"
	"math"
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
