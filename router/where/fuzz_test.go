package where

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/expr-lang/expr"

	"github.com/ferry-gateway/ferry/bus"
)

// agree fails t unless Compile survives src and, when it compiles, the
// predicate agrees with expr's VM on every record.
func agree(t *testing.T, src string, recs []bus.Record) (compiledOK, fast bool) {
	t.Helper()
	c, err := compile(src)
	if err != nil {
		if strings.HasPrefix(err.Error(), panicPrefix) {
			t.Fatalf("compile %q panicked: %v", src, err)
		}
		return false, false
	}
	for i := range recs {
		got := c.pred(&recs[i])
		var e env
		e.fill(&recs[i], true)
		out, err := expr.Run(c.prog, &e)
		want, _ := out.(bool)
		want = want && err == nil
		if got != want {
			t.Fatalf("%q on record %d (%v %v): fast=%v got %v, expr says %v (err %v)",
				src, i, recs[i].Value.Kind, recs[i].Value, c.fast, got, want, err)
		}
	}
	return true, c.fast
}

func FuzzCompile(f *testing.F) {
	for _, s := range fastExprs {
		f.Add(s)
	}
	for _, s := range slowExprs {
		f.Add(s)
	}
	for _, s := range []string{`(`, `"`, `tag matches "[" `, `1 % 0 == 0`, `value ?? `, `{`, `[1,2][5] == 1`, `attrs.x.y == ""`} {
		f.Add(s)
	}
	recs := records()
	f.Fuzz(func(t *testing.T, src string) {
		agree(t, src, recs)
	})
}

// TestRandomExpressions generates well-typed expressions from the translated
// subset, plus operands that push them onto the VM, and checks both paths
// against expr. Byte-level fuzzing rarely gets past the parser; this does.
func TestRandomExpressions(t *testing.T) {
	n := 4000
	if testing.Short() {
		n = 500
	}
	recs := records()
	g := gen{rand.New(rand.NewPCG(1, 2))}
	var compiled, fast int
	for range n {
		src := g.boolean(4)
		ok, f := agree(t, src, recs)
		if ok {
			compiled++
		}
		if f {
			fast++
		}
	}
	t.Logf("%d expressions: %d compiled, %d on the fast path", n, compiled, fast)
	if fast < n/2 {
		t.Errorf("only %d of %d generated expressions took the fast path", fast, n)
	}
}

type gen struct{ r *rand.Rand }

func (g gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g gen) boolean(depth int) string {
	if depth <= 0 {
		return g.pick("true", "false", `quality == "GOOD"`, `"k" in attrs`, "value > 0", `tag startsWith "line1"`)
	}
	d := depth - 1
	switch g.r.IntN(12) {
	case 0:
		return fmt.Sprintf("(%s %s %s)", g.boolean(d), g.pick("&&", "||", "and", "or", "==", "!="), g.boolean(d))
	case 1:
		return fmt.Sprintf("%s(%s)", g.pick("!", "not "), g.boolean(d))
	case 2, 3:
		return fmt.Sprintf("(%s %s %s)", g.number(d), g.pick("==", "!=", "<", "<=", ">", ">="), g.number(d))
	case 4:
		return fmt.Sprintf("(%s %s %s)", g.str(d), g.pick("==", "!=", "<", "<=", ">", ">="), g.str(d))
	case 5:
		return fmt.Sprintf("(%s %s %s)", g.str(d), g.pick("startsWith", "endsWith", "contains", "not contains"), g.str(d))
	case 6:
		return fmt.Sprintf("(%s matches %q)", g.str(d), g.pick("^line", "[0-9]+", "(?i)GOOD", "^$", "."))
	case 7:
		return fmt.Sprintf("(%s %s [%s, %s, %s])", g.number(d), g.pick("in", "not in"), g.number(0), g.number(0), g.number(0))
	case 8:
		return fmt.Sprintf("(%s %s [%s, %s])", g.str(d), g.pick("in", "not in"), g.str(0), g.str(0))
	case 9:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d), g.boolean(d), g.boolean(d))
	case 10:
		return fmt.Sprintf("(%s in attrs)", g.str(d))
	}
	return g.boolean(0)
}

func (g gen) number(depth int) string {
	if depth <= 0 || g.r.IntN(3) == 0 {
		return g.pick("value", "status", "seq", "0", "1", "2", "-3", "7", "2.5", "-0.5", "1e300", "10",
			"9223372036854775807", "0.0", "len(tag)", "len(attrs)")
	}
	d := depth - 1
	switch g.r.IntN(16) {
	case 0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14:
		return fmt.Sprintf("(%s %s %s)", g.number(d), g.pick("+", "-", "*", "/", "%", "**"), g.number(d))
	case 3:
		return fmt.Sprintf("-(%s)", g.number(d))
	case 4:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d), g.number(d), g.number(d))
	case 5:
		return fmt.Sprintf("len(%s)", g.str(d))
	}
	return g.pick("abs(value)", "int(value)", "float(seq)", "max(seq, status)")
}

func (g gen) str(depth int) string {
	if depth <= 0 || g.r.IntN(3) == 0 {
		return g.pick("source", "device", "tag", "unit", "text", "kind", "quality",
			`"line1/temp"`, `"GOOD"`, `""`, `"running"`, `"double"`, `"ü"`,
			`attrs.line`, `attrs["tag"]`, `attrs.missing`)
	}
	d := depth - 1
	switch g.r.IntN(12) {
	case 0, 1, 2, 3, 4:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d), g.str(d), g.str(d))
	case 5, 6, 7, 8, 9:
		return fmt.Sprintf("attrs[%s]", g.str(d))
	case 10:
		return fmt.Sprintf("lower(%s)", g.str(d))
	}
	return fmt.Sprintf("(%s + %s)", g.str(d), g.str(d))
}
