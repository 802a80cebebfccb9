package parse

import (
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

// parseAll parses each payload with one parser (a stream) and renders the
// records.
func parseAll(t *testing.T, c Config, payloads ...string) []string {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var b bus.Batch
	for _, pl := range payloads {
		if err := p.Parse([]byte(pl), "t", &b); err != nil {
			t.Fatalf("%q: %v", pl, err)
		}
	}
	var out []string
	for _, r := range b.Records {
		out = append(out, rec(r))
	}
	return out
}

// TestKVQuotesProtectSeparators: every documented separator splits pairs;
// inside double quotes none does, and \" is a quote.
func TestKVQuotesProtectSeparators(t *testing.T) {
	got := parseAll(t, Config{Format: "kv", Device: "d"},
		`msg="hello world" a=1,b=2;c=3	d=4`,
		`note="x, y; z" e="say \"hi\""`)
	want := []string{"msg=hello world(string)@d", "a=1(long)@d", "b=2(long)@d", "c=3(long)@d", "d=4(long)@d",
		"note=x, y; z(string)@d", `e=say "hi"(string)@d`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	p, _ := New(Config{Format: "kv"})
	var b bus.Batch
	for _, bad := range []string{`msg="unclosed`, `msg="a"b`, `novalue`} {
		if err := p.ParseLine([]byte(bad), "t", &b); err == nil {
			t.Errorf("%q parsed; want an error", bad)
		}
	}
}

// TestValueTypeStable: under auto a tag that carried a fraction stays a
// double; number makes every number a double.
func TestValueTypeStable(t *testing.T) {
	got := parseAll(t, Config{Format: "kv"}, "temp=22 rpm=1450", "temp=21.5 rpm=1451", "temp=22 rpm=1452")
	want := "temp=22(long)|rpm=1450(long)|temp=21.5(double)|rpm=1451(long)|temp=22(double)|rpm=1452(long)"
	if strings.Join(got, "|") != want {
		t.Errorf("auto: %v, want %s", got, want)
	}
	got = parseAll(t, Config{Format: "kv", ValueType: "number"}, "temp=22 ok=true s=RUN", "temp=21.5")
	want = "temp=22(double)|ok=true(boolean)|s=RUN(string)|temp=21.5(double)"
	if strings.Join(got, "|") != want {
		t.Errorf("number: %v, want %s", got, want)
	}
}

// TestNumericTimeByMagnitude: with the default time_format a numeric ts is
// epoch seconds, ms, µs or ns by magnitude; time_format still decides when
// set.
func TestNumericTimeByMagnitude(t *testing.T) {
	const at = "2026-12-06T05:00:00Z"
	for _, ts := range []string{`1796533200`, `1796533200000`, `1796533200000000`, `1796533200000000000`, `"1796533200000"`, `"` + at + `"`} {
		got := parseAll(t, Config{Format: "json"}, `{"tag":"x","value":1,"ts":`+ts+`}`)
		if len(got) != 1 || !strings.HasSuffix(got[0], "t="+at) {
			t.Errorf("ts %s: %v, want time %s", ts, got, at)
		}
	}
	got := parseAll(t, Config{Format: "json"}, `{"tag":"x","value":1,"ts":1796533200.25}`)
	if !strings.HasSuffix(got[0], "t=2026-12-06T05:00:00.25Z") {
		t.Errorf("fractional seconds: %v", got)
	}
	got = parseAll(t, Config{Format: "json", TimeFormat: "unix_ms"}, `{"tag":"x","value":1,"ts":1796533200}`)
	if !strings.HasSuffix(got[0], "t=1970-01-21T19:02:13.2Z") {
		t.Errorf("time_format unix_ms must win: %v", got)
	}
}
