package parse

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// rec is the part of a record a case checks: tag=value(kind)[@device][#quality].
func rec(r bus.Record) string {
	s := fmt.Sprintf("%s=%s(%s)", r.Tag, r.Value, r.Value.Kind)
	if r.Device != "" {
		s += "@" + r.Device
	}
	if r.Quality != bus.Good {
		s += "#" + r.Quality.String()
	}
	if r.Unit != "" {
		s += "[" + r.Unit + "]"
	}
	if r.SourceTime != 0 {
		s += " t=" + time.Unix(0, r.SourceTime).UTC().Format(time.RFC3339Nano)
	}
	return s
}

// cases is the shared table of legacy payloads: valid ones with the records
// they make, malformed ones with the error they give. The fuzz target uses
// the payloads as seeds.
var cases = []struct {
	name    string
	cfg     Config
	topic   string
	payload string
	want    []string // records, or
	err     string   // part of the error
}{
	{"json one", Config{}, "t", `{"tag":"temp","value":21.5,"ts":"2026-01-02T03:04:05Z","unit":"C"}`,
		[]string{"temp=21.5(double)[C] t=2026-01-02T03:04:05Z"}, ""},
	{"json array and types", Config{}, "t", `[{"tag":"a","value":3},{"tag":"b","value":true},{"tag":"c","value":"on"},{"tag":"d","value":null},{"tag":"e","value":[1,2]}]`,
		[]string{"a=3(long)", "b=true(boolean)", "c=on(string)", "d=null(null)", "e=[1,2](string)"}, ""},
	{"json lines", Config{}, "t", "{\"tag\":\"a\",\"value\":1}\n{\"tag\":\"b\",\"value\":2}\n", []string{"a=1(long)", "b=2(long)"}, ""},
	{"json mapped paths", Config{Fields: Fields{Tag: "meta.name", Value: "/data/v", Time: "at", Quality: "q", Device: "src[0]"}, TimeFormat: "unix_ms"}, "t",
		`{"meta":{"name":"rpm"},"data":{"v":1450},"at":1767322800000,"q":"uncertain","src":["m1"]}`,
		[]string{"rpm=1450(long)@m1#UNCERTAIN t=2026-01-02T03:00:00Z"}, ""},
	{"json tag from topic", Config{Tag: "{topic.2}", Device: "{topic.1}"}, "plant/press-1/temp", `{"value":7.5}`, []string{"temp=7.5(double)@press-1"}, ""},
	{"json wide", Config{Wide: true, Device: "{topic.1}", TimeFormat: "unix"}, "plant/m7", `{"ts":1767322800,"temp":20,"rpm":1450.5}`,
		[]string{"rpm=1450.5(double)@m7 t=2026-01-02T03:00:00Z", "temp=20(long)@m7 t=2026-01-02T03:00:00Z"}, ""},
	{"json wide nested", Config{Wide: true, Values: "values", Tag: "line1/{key}"}, "t", `{"values":{"a":1}}`, []string{"line1/a=1(long)"}, ""},
	{"json forced double", Config{ValueType: "double"}, "t", `{"tag":"a","value":"2.5"}`, []string{"a=2.5(double)"}, ""},
	{"csv columns", Config{Format: "csv", Columns: []string{"time", "tag", "value"}}, "t", "2026-01-02T03:04:05Z,temp,21.5\n2026-01-02T03:04:06Z,temp,21.6\n",
		[]string{"temp=21.5(double) t=2026-01-02T03:04:05Z", "temp=21.6(double) t=2026-01-02T03:04:06Z"}, ""},
	{"csv header wide", Config{Format: "csv", Header: true, Device: "oven"}, "t", "time,temp,rpm\n2026-01-02T03:04:05Z,21,1450\n",
		[]string{"temp=21(long)@oven t=2026-01-02T03:04:05Z", "rpm=1450(long)@oven t=2026-01-02T03:04:05Z"}, ""},
	{"csv semicolon skip", Config{Format: "csv", Delimiter: ";", Columns: []string{"-", "tag", "value", "unit"}}, "t", "x;p;1,5;bar\n", []string{"p=1,5(string)[bar]"}, ""},
	{"kv", Config{Format: "kv", Device: "line2"}, "t", "temp=21.5 rpm=1450 state=RUN", []string{"temp=21.5(double)@line2", "rpm=1450(long)@line2", "state=RUN(string)@line2"}, ""},
	{"kv long form", Config{Format: "kv"}, "t", `tag=temp value=3 quality=bad`, []string{"temp=3(long)#BAD"}, ""},
	{"regex", Config{Format: "regex", Pattern: `^(?P<time>\S+) (?P<device>\w+) (?P<tag>\w+)=(?P<value>\S+)$`}, "t", "2026-01-02T03:04:05Z m1 temp=21.5",
		[]string{"temp=21.5(double)@m1 t=2026-01-02T03:04:05Z"}, ""},
	{"regex wide groups", Config{Format: "regex", Pattern: `T=(?P<temp>\d+) P=(?P<pressure>[\d.]+)`}, "t", "T=21 P=1.2", []string{"temp=21(long)", "pressure=1.2(double)"}, ""},
	{"raw number", Config{Format: "raw", Tag: "{topic}"}, "plant/line1/temp", " 21.5\n", []string{"plant/line1/temp=21.5(double)"}, ""},
	{"raw string", Config{Format: "raw", Tag: "state"}, "t", "RUNNING", []string{"state=RUNNING(string)"}, ""},

	{"bad json", Config{}, "t", `{"tag":"a","value":`, nil, "json"},
	{"json not object", Config{}, "t", `42`, nil, "expected an object"},
	{"json no value", Config{}, "t", `{"tag":"a"}`, nil, "no value at value"},
	{"json no tag", Config{}, "t", `{"value":1}`, nil, "no tag"},
	{"json bad quality", Config{}, "t", `{"tag":"a","value":1,"quality":"SHINY"}`, nil, "quality"},
	{"json bad time", Config{}, "t", `{"tag":"a","value":1,"ts":"yesterday"}`, nil, "time"},
	{"non-numeric where a number is mapped", Config{ValueType: "double"}, "t", `{"tag":"a","value":"n/a"}`, nil, "not a number"},
	{"csv wrong column count", Config{Format: "csv", Columns: []string{"tag", "value"}}, "t", "a,1,extra\n", nil, "3 columns where 2 are mapped"},
	{"csv bad quote", Config{Format: "csv", Columns: []string{"tag", "value"}}, "t", "a,\"1\n", nil, "csv"},
	{"kv garbage", Config{Format: "kv"}, "t", "just words", nil, "not key=value"},
	{"regex no match", Config{Format: "regex", Pattern: `(?P<tag>\w+)=(?P<value>\d+)`}, "t", "nothing here", nil, "does not match"},
	{"partial batch rolled back", Config{}, "t", `[{"tag":"a","value":1},{"value":2}]`, nil, "element 1"},
}

func TestParse(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(c.cfg)
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			b := bus.Batch{Records: []bus.Record{{Tag: "kept"}}} // Parse appends
			err = p.Parse([]byte(c.payload), c.topic, &b)
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				if len(b.Records) != 1 {
					t.Fatalf("failed parse left %d records", len(b.Records)-1)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range b.Records[1:] {
				got = append(got, rec(r))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestCSVStreamHeaderOnce(t *testing.T) {
	p, _ := New(Config{Format: "csv", Header: true})
	var b bus.Batch
	for _, l := range []string{"temp,rpm", "1,2", "3,4"} {
		if err := p.ParseLine([]byte(l), "f", &b); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.Records) != 4 || b.Records[2].Tag != "temp" {
		t.Fatalf("%v", b.Records)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Format: "xml"}, `format: "xml" is not one of`},
		{Config{Format: "csv"}, "columns: csv needs columns"},
		{Config{Format: "csv", Columns: []string{"a"}, Delimiter: ";;"}, "delimiter: must be one character"},
		{Config{Format: "regex", Pattern: "("}, "pattern: does not compile"},
		{Config{Format: "regex", Pattern: `\d+`}, "pattern: has no named groups"},
		{Config{Format: "raw"}, "tag: raw payloads carry no tag"},
		{Config{Tag: "{nope}"}, "tag: unknown placeholder {nope}"},
		{Config{ValueType: "int"}, `value_type: "int" is not one of`},
		{Config{TimeFormat: "julian"}, `time_format: "julian"`},
	} {
		c.cfg.SetDefaults()
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for i, c := range cases {
		f.Add(i, []byte(c.payload))
	}
	f.Fuzz(func(t *testing.T, i int, payload []byte) {
		if i < 0 {
			i = -i
		}
		c := cases[i%len(cases)]
		p, err := New(c.cfg)
		if err != nil {
			return
		}
		var b bus.Batch
		_ = p.Parse(payload, c.topic, &b)
		_ = p.ParseLine(payload, c.topic, &b)
	})
}

func BenchmarkParseKV(b *testing.B) {
	p, _ := New(Config{Format: "kv", Device: "m"})
	line := []byte("temp=21.5 rpm=1450 state=RUN pressure=1.25")
	var batch bus.Batch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		_ = p.ParseLine(line, "f", &batch)
	}
	b.ReportMetric(float64(b.N*4)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkParseCSV(b *testing.B) {
	p, _ := New(Config{Format: "csv", Columns: []string{"time", "tag", "value"}})
	line := []byte("2026-01-02T03:04:05Z,temp,21.5")
	var batch bus.Batch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		_ = p.ParseLine(line, "f", &batch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
