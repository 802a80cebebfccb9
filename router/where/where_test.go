package where

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"

	"github.com/ferry-gateway/ferry/bus"
)

// records covers every value kind, the edges of numbers (NaN, infinities,
// large longs), each quality, and missing, empty and present attributes.
func records() []bus.Record {
	base := bus.Record{Source: "opc", Device: "press1", Tag: "line1/temp", Unit: "degC", Seq: 7, Status: 0}
	with := func(f func(r *bus.Record)) bus.Record {
		r := base
		f(&r)
		return r
	}
	return []bus.Record{
		with(func(r *bus.Record) { r.Value = bus.Double(12.5) }),
		with(func(r *bus.Record) { r.Value = bus.Double(10) }),
		with(func(r *bus.Record) { r.Value = bus.Double(-0.5); r.Quality = bus.Uncertain; r.Status = 0x40000000 }),
		with(func(r *bus.Record) { r.Value = bus.Double(math.NaN()) }),
		with(func(r *bus.Record) { r.Value = bus.Double(math.Inf(1)) }),
		with(func(r *bus.Record) { r.Value = bus.Double(math.Inf(-1)); r.Quality = bus.Bad }),
		with(func(r *bus.Record) { r.Value = bus.Long(42); r.Tag = "line2/count"; r.Seq = 1 << 40 }),
		with(func(r *bus.Record) { r.Value = bus.Long(-7); r.Unit = "" }),
		with(func(r *bus.Record) { r.Value = bus.Long(1 << 60); r.Seq = 0; r.Status = 5 }),
		with(func(r *bus.Record) { r.Value = bus.Long(3); r.Seq = 3; r.Status = 3 }),
		with(func(r *bus.Record) { r.Value = bus.Bool(true); r.Tag = "line1/run" }),
		with(func(r *bus.Record) { r.Value = bus.Bool(false); r.Quality = bus.Bad; r.Status = 0x80000000 }),
		with(func(r *bus.Record) { r.Value = bus.String("running"); r.Tag = "line1/state" }),
		with(func(r *bus.Record) { r.Value = bus.String(""); r.Device = "" }),
		with(func(r *bus.Record) { r.Value = bus.String("12.5"); r.Source = "mqtt" }),
		with(func(r *bus.Record) { r.Value = bus.Bytes([]byte{0xde, 0xad}) }),
		with(func(r *bus.Record) { r.Value = bus.Null(); r.Quality = bus.Bad }),
		with(func(r *bus.Record) {
			r.Value = bus.Double(99)
			r.Attrs = map[string]string{"line": "l1", "cell": "c7", "empty": "", "press1": "p", "tag": "line1/temp"}
		}),
		with(func(r *bus.Record) {
			r.Value = bus.Long(5)
			r.Tag = "LINE1/x"
			r.Attrs = map[string]string{"line": "l2", "tag": "line1/temp", "LINE1/x": "1"}
		}),
		with(func(r *bus.Record) { r.Value = bus.Double(7); r.Attrs = map[string]string{} }),
	}
}

// fastExprs must all translate; each is checked against expr's VM.
var fastExprs = []string{
	`true`,
	`false`,
	`quality == "GOOD" && value > 10 && tag startsWith "line1/"`,
	`quality == "GOOD"`,
	`quality != "BAD"`,
	`"BAD" == quality`,
	`quality == "good"`,
	`quality < "GOOD"`,
	`kind == "double"`,
	`kind != "string" and kind != "bytes"`,
	`kind in ["long", "boolean"]`,
	`type == "double"`, // the record's field name (issue 15)
	`type != "string" && kind == type`,
	`type in ["long", "boolean"]`,
	`value > 10`,
	`value >= 10`,
	`value < 10.0`,
	`10 <= value`,
	`value == 10`,
	`value != value`,
	`value == 12.5 || value == -0.5`,
	`-value < 0`,
	`+value > 0`,
	`not (value > 10)`,
	`!(value > 10) && quality == "GOOD"`,
	`value * 2 + 1 > 20`,
	`value / 2 > 5`,
	`(value - 2) * 3 >= 25`,
	`value ** 2 > 100`,
	`value ^ 0.5 < 3`,
	`value > 1e3 || value < -1e3`,
	`status == 0`,
	`status > 0x3fffffff`,
	`status % 2 == 1`,
	`seq % 3 == 0`,
	`seq % -3 == 0`,
	`seq / 2 == 3.5`,
	`seq + status > 5`,
	`seq - 1 < 0`,
	`seq * 2 == 14`,
	`seq > 1000000`,
	`status * 2 > value`,
	`seq == 7.0`,
	`seq + 0.5 > 7`,
	`-seq < -6`,
	`2 ** 10 == 1024`,
	`1 + 2 * 3 == 7`,
	`7 / 2 == 3.5`,
	`7 % 2 == 1`,
	`tag == "line1/temp"`,
	`tag != "line1/temp"`,
	`tag < "line2"`,
	`tag >= "line2"`,
	`tag startsWith "line1/"`,
	`tag endsWith "/temp"`,
	`tag contains "temp"`,
	`tag contains unit`,
	`tag startsWith device`,
	`not (tag startsWith "line1/")`,
	`tag not startsWith "line1/"`,
	`tag matches "^line[0-9]+/t"`,
	`tag matches "(?i)^line1"`,
	`tag not matches "run$"`,
	`source == "opc" and device == "press1"`,
	`unit == ""`,
	`unit in ["degC", "degF"]`,
	`tag in ["line1/temp", "line1/run", "a", "b", "c", "d", "e", "f", "g", "h"]`,
	`tag not in ["line1/temp"]`,
	`seq in [7, 8, 9]`,
	`seq in [7.0, 3]`,
	`value in [10, 12.5, 99]`,
	`value in [-0.5]`,
	`status in [3, 0]`,
	`tag in ["line1/temp", 1]`,
	`tag in [attrs.tag, "line1/run"]`,
	`seq in [status, 7.0]`,
	`value not in [seq, status * 2.5, 99]`,
	`seq in [3, "x"]`,
	`text == "running"`,
	`text == "12.5"`,
	`text == "true"`,
	`text == "null"`,
	`text == "dead"`,
	`text startsWith "1"`,
	`text != ""`,
	`attrs["line"] == "l1"`,
	`attrs.line == "l2"`,
	`attrs.missing == ""`,
	`attrs.empty == ""`,
	`attrs[device] == ""`,
	`attrs["tag"] == tag`,
	`"line" in attrs`,
	`"empty" in attrs`,
	`tag in attrs`,
	`not ("line" in attrs)`,
	`attrs.line startsWith "l"`,
	`len(attrs) > 1`,
	`len(tag) == 10`,
	`len(text) > 2`,
	`len("abc") == 3`,
	`len("ü€") == 2`,
	`(quality == "GOOD" ? value : -value) > 0`,
	`quality == "GOOD" ? tag startsWith "line1" : false`,
	`(seq > 5 ? status : seq) == 0`,
	`(kind == "string" ? text : "n/a") == "running"`,
	`if quality == "BAD" { false } else { value > 0 }`,
	`(value > 0) == (seq > 0)`,
	`(value > 0) != true`,
	`value > 0 and value < 100 or tag == "x"`,
	`1 < 2 && "a" < "b"`,
	`seq < status < 10`,
}

// slowExprs must compile but fall back to the VM.
var slowExprs = []string{
	`lower(tag) == "line1/x"`,
	`upper(quality) == "GOOD"`,
	`attrs?.line == "l1"`,
	`(attrs.line ?? "x") == "l1"`,
	`seq % status == 0`,
	`seq % (status - status) == 0`,
	`tag + "/x" == "line1/temp/x"`,
	`(quality == "GOOD" ? seq : value) > 5`,
	`seq in 1..10`,
	`any(["a", "b"], # == device)`,
	`let x = value * 2; x > 20`,
	`tag matches device`,
	`abs(value) > 1`,
	`attrs == nil`,
	`string(seq) == "7"`,
	`split(tag, "/")[0] == "line1"`,
	`$env.tag == "line1/temp"`,
	`$env["text"] == "running"`,
}

func run(t *testing.T, c *compiled, r *bus.Record) bool {
	t.Helper()
	var e env
	e.fill(r, true)
	out, err := expr.Run(c.prog, &e)
	if err != nil {
		return false
	}
	b, ok := out.(bool)
	if !ok {
		t.Fatalf("expr returned %T, want bool", out)
	}
	return b
}

func TestDifferential(t *testing.T) {
	recs := records()
	check := func(t *testing.T, src string, wantFast bool) {
		c, err := compile(src)
		if err != nil {
			t.Fatal(err)
		}
		if c.fast != wantFast {
			t.Fatalf("fast = %v, want %v", c.fast, wantFast)
		}
		matched := 0
		for i := range recs {
			got, want := c.pred(&recs[i]), run(t, c, &recs[i])
			if got != want {
				t.Errorf("record %d (%v %v %s): got %v, expr says %v", i, recs[i].Value.Kind, recs[i].Value, recs[i].Tag, got, want)
			}
			if got {
				matched++
			}
		}
		t.Logf("%d/%d records match", matched, len(recs))
	}
	for _, src := range fastExprs {
		t.Run("fast/"+src, func(t *testing.T) { check(t, src, true) })
	}
	for _, src := range slowExprs {
		t.Run("vm/"+src, func(t *testing.T) { check(t, src, false) })
	}
}

// TestFastPathAllocs holds the translated subset to zero allocations. text on
// a value that is not a string renders it, which allocates, so those
// expressions are measured on string records only.
func TestFastPathAllocs(t *testing.T) {
	recs := records()
	var strRecs []bus.Record
	for _, r := range recs {
		if r.Value.Kind == bus.KindString {
			strRecs = append(strRecs, r)
		}
	}
	for _, src := range fastExprs {
		t.Run(src, func(t *testing.T) {
			c, err := compile(src)
			if err != nil || !c.fast {
				t.Fatalf("compile: fast=%v err=%v", c != nil && c.fast, err)
			}
			if raceEnabled && strings.Contains(src, "matches") {
				// regexp keeps its matchers in a sync.Pool, which drops
				// items at random under the race detector by design.
				t.Skip("regexp's pool allocates at random under -race")
			}
			in := recs
			if strings.Contains(src, "text") {
				in = strRecs
			}
			i := 0
			if n := testing.AllocsPerRun(200, func() {
				c.pred(&in[i%len(in)])
				i++
			}); n != 0 {
				t.Fatalf("%v allocs per record, want 0", n)
			}
		})
	}
}

func TestFallbackIsSafeForConcurrentUse(t *testing.T) {
	p, err := Compile(`lower(tag) startsWith "line1" && attrs?.line == "l1"`)
	if err != nil {
		t.Fatal(err)
	}
	recs := records()
	done := make(chan int)
	for range 4 {
		go func() {
			n := 0
			for range 200 {
				for i := range recs {
					if p(&recs[i]) {
						n++
					}
				}
			}
			done <- n
		}()
	}
	for range 4 {
		if n := <-done; n != 200 {
			t.Errorf("matched %d, want 200", n)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		src          string
		line, column int
		msg          string
	}{
		{``, 1, 1, "empty expression"},
		{`   `, 1, 1, "empty expression"},
		{`foo > 1`, 1, 1, "unknown name foo"},
		{`value > 1 && valu < 3`, 1, 14, "unknown name valu"},
		{"quality == \"GOOD\" &&\n  tagg == \"x\"", 2, 3, "unknown name tagg"},
		{`value +`, 1, 7, "unexpected token EOF"},
		{`value + 1`, 1, 1, "expected bool, but got float64"},
		{`tag`, 1, 1, "expected bool, but got string"},
		{`tag == 1`, 1, 5, "invalid operation: =="},
		{`tag matches "("`, 1, 5, "missing closing )"},
		{`now() > 0`, 1, 1, "unknown name now"},
		{`age > 3`, 1, 1, "unknown name age"},
		{`(value > 1`, 1, 10, "unexpected token EOF"},
		{`seq % 0 == 0`, 1, 5, "modulo by zero"},
		{"value > 0 ||\n seq % (1 - 1) > 0", 2, 6, "modulo by zero"},
		// Issue 15: the names are listed, a near miss is named, = is explained.
		{`typ == "x"`, 1, 1, "unknown name typ; did you mean type? names are source, device, tag, unit, value, text, type, kind, quality, status, seq, attrs"},
		{`Tag == "x"`, 1, 1, "did you mean tag?"},
		{`quality = "GOOD"`, 1, 9, `"=" is not a comparison; write == to compare`},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			_, err := Compile(tc.src)
			if err == nil {
				t.Fatal("compiled; want an error")
			}
			if !errors.Is(err, ErrInvalidExpr) {
				t.Errorf("errors.Is(err, ErrInvalidExpr) = false for %v", err)
			}
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("err is %T, want *Error", err)
			}
			if we.Line != tc.line || we.Column != tc.column || !strings.Contains(we.Message, tc.msg) {
				t.Errorf("got %d:%d %q, want %d:%d containing %q", we.Line, we.Column, we.Message, tc.line, tc.column, tc.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err.Error())
			}
			if we.Snippet != "" {
				var fe *file.Error
				if !errors.As(err, &fe) {
					t.Errorf("snippet without expr's *file.Error underneath")
				}
			}
		})
	}
}

// Names, which error messages list, must be the names env declares.
func TestNamesAreTheEnv(t *testing.T) {
	var declared []string
	et := reflect.TypeFor[env]()
	for i := 0; i < et.NumField(); i++ {
		declared = append(declared, et.Field(i).Tag.Get("expr"))
	}
	sort.Strings(declared)
	listed := slices.Clone(Names)
	sort.Strings(listed)
	if !slices.Equal(declared, listed) {
		t.Errorf("Names = %v, env declares %v", listed, declared)
	}
}
