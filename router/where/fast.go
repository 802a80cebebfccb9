package where

import (
	"math"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"

	"github.com/ferry-gateway/ferry/bus"
)

// The fast path translates a checked expr tree into closures over *bus.Record.
// It covers:
//
//   - literals: integers, floats, strings, booleans
//   - the names of the package comment, attrs["k"], attrs.k and attrs[expr]
//   - == != < <= > >= on numbers and on strings, == != on booleans
//   - && || ! and their spellings and/or/not
//   - + - * / % ** on numbers (% only by a non-zero constant), unary - and +
//   - in / not in with an array of constants, and "k" in attrs
//   - startsWith, endsWith, contains, and matches with a constant pattern
//   - the conditional a ? b : c when both branches have the same type
//   - len of a string (in runes) or of attrs
//
// Anything else (nil, ?? and ?., ranges, other builtins, closures, let, maps,
// mixed-type branches) returns ok=false from translate and the whole
// expression runs on expr's VM. Every construct mirrors expr's runtime, int
// and float promotion included; where_test.go checks that differentially.
// Nothing in the subset can fail at run time, which is why % needs a constant
// divisor: expr turns a division by zero into an error, and a predicate has
// no way to say so.

type typ uint8

const (
	tBool typ = iota + 1
	tInt
	tFloat
	tString
)

// val is one translated sub-expression: the closure matching its type, and
// whether it is constant, so that operators can fold constants at compile
// time and specialise on a constant operand.
type val struct {
	t     typ
	konst bool
	b     func(*bus.Record) bool
	i     func(*bus.Record) int
	f     func(*bus.Record) float64
	s     func(*bus.Record) string
}

func translate(n ast.Node) (func(*bus.Record) bool, bool) {
	v, ok := build(n)
	if !ok || v.t != tBool {
		return nil, false
	}
	return v.b, true
}

func build(n ast.Node) (val, bool) {
	v, ok := build1(n)
	if !ok {
		return val{}, false
	}
	// A disagreement with the checker means a case this file does not model;
	// the VM gets it rather than a guess.
	if typeOf(n.Type()) != v.t {
		return val{}, false
	}
	if v.konst {
		v = fold(v)
	}
	return v, true
}

func typeOf(t reflect.Type) typ {
	if t == nil {
		return 0
	}
	switch t.Kind() {
	case reflect.Bool:
		return tBool
	case reflect.Int:
		return tInt
	case reflect.Float64:
		return tFloat
	case reflect.String:
		return tString
	}
	return 0
}

func build1(n ast.Node) (val, bool) {
	switch n := n.(type) {
	case *ast.BoolNode:
		return constBool(n.Value), true
	case *ast.IntegerNode:
		switch typeOf(n.Type()) {
		case tInt:
			return constInt(n.Value), true
		case tFloat:
			return constFloat(float64(n.Value)), true
		}
	case *ast.FloatNode:
		return constFloat(n.Value), true
	case *ast.StringNode:
		return constString(n.Value), true
	case *ast.IdentifierNode:
		return ident(n.Value)
	case *ast.MemberNode:
		return member(n)
	case *ast.UnaryNode:
		return unary(n)
	case *ast.BinaryNode:
		return binary(n)
	case *ast.ConditionalNode:
		return conditional(n)
	case *ast.BuiltinNode:
		return builtin(n)
	}
	return val{}, false
}

// fold evaluates a constant once. Constant closures ignore the record.
func fold(v val) val {
	switch v.t {
	case tBool:
		return constBool(v.b(nil))
	case tInt:
		return constInt(v.i(nil))
	case tFloat:
		return constFloat(v.f(nil))
	case tString:
		return constString(v.s(nil))
	}
	return v
}

func constBool(c bool) val {
	return val{t: tBool, konst: true, b: func(*bus.Record) bool { return c }}
}

func constInt(c int) val {
	return val{t: tInt, konst: true, i: func(*bus.Record) int { return c }}
}

func constFloat(c float64) val {
	return val{t: tFloat, konst: true, f: func(*bus.Record) float64 { return c }}
}

func constString(c string) val {
	return val{t: tString, konst: true, s: func(*bus.Record) string { return c }}
}

func ident(name string) (val, bool) {
	switch name {
	case "source":
		return val{t: tString, s: func(r *bus.Record) string { return r.Source }}, true
	case "device":
		return val{t: tString, s: func(r *bus.Record) string { return r.Device }}, true
	case "tag":
		return val{t: tString, s: func(r *bus.Record) string { return r.Tag }}, true
	case "unit":
		return val{t: tString, s: func(r *bus.Record) string { return r.Unit }}, true
	case "value":
		return val{t: tFloat, f: func(r *bus.Record) float64 { return numeric(r.Value) }}, true
	case "text":
		return val{t: tString, s: func(r *bus.Record) string { return text(r.Value) }}, true
	case "kind", "type":
		return val{t: tString, s: func(r *bus.Record) string { return r.Value.Kind.String() }}, true
	case "quality":
		return val{t: tString, s: func(r *bus.Record) string { return r.Quality.String() }}, true
	case "status":
		return val{t: tInt, i: func(r *bus.Record) int { return int(r.Status) }}, true
	case "seq":
		return val{t: tInt, i: func(r *bus.Record) int { return int(r.Seq) }}, true
	}
	return val{}, false
}

func isAttrs(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "attrs"
}

func member(n *ast.MemberNode) (val, bool) {
	if n.Optional || n.Method || !isAttrs(n.Node) {
		return val{}, false
	}
	k, ok := build(n.Property)
	if !ok || k.t != tString {
		return val{}, false
	}
	if k.konst {
		key := k.s(nil)
		return val{t: tString, s: func(r *bus.Record) string { return r.Attrs[key] }}, true
	}
	ks := k.s
	return val{t: tString, s: func(r *bus.Record) string { return r.Attrs[ks(r)] }}, true
}

func unary(n *ast.UnaryNode) (val, bool) {
	x, ok := build(n.Node)
	if !ok {
		return val{}, false
	}
	switch n.Operator {
	case "!", "not":
		if x.t != tBool {
			return val{}, false
		}
		b := x.b
		return val{t: tBool, konst: x.konst, b: func(r *bus.Record) bool { return !b(r) }}, true
	case "+":
		if x.t == tInt || x.t == tFloat {
			return x, true
		}
	case "-":
		switch x.t {
		case tInt:
			i := x.i
			return val{t: tInt, konst: x.konst, i: func(r *bus.Record) int { return -i(r) }}, true
		case tFloat:
			f := x.f
			return val{t: tFloat, konst: x.konst, f: func(r *bus.Record) float64 { return -f(r) }}, true
		}
	}
	return val{}, false
}

func conditional(n *ast.ConditionalNode) (val, bool) {
	c, ok1 := build(n.Cond)
	a, ok2 := build(n.Exp1)
	b, ok3 := build(n.Exp2)
	if !ok1 || !ok2 || !ok3 || c.t != tBool || a.t != b.t {
		return val{}, false
	}
	k := c.konst && a.konst && b.konst
	cb := c.b
	switch a.t {
	case tBool:
		x, y := a.b, b.b
		return val{t: tBool, konst: k, b: func(r *bus.Record) bool {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case tInt:
		x, y := a.i, b.i
		return val{t: tInt, konst: k, i: func(r *bus.Record) int {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case tFloat:
		x, y := a.f, b.f
		return val{t: tFloat, konst: k, f: func(r *bus.Record) float64 {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	case tString:
		x, y := a.s, b.s
		return val{t: tString, konst: k, s: func(r *bus.Record) string {
			if cb(r) {
				return x(r)
			}
			return y(r)
		}}, true
	}
	return val{}, false
}

func builtin(n *ast.BuiltinNode) (val, bool) {
	if n.Name != "len" || len(n.Arguments) != 1 {
		return val{}, false
	}
	if isAttrs(n.Arguments[0]) {
		return val{t: tInt, i: func(r *bus.Record) int { return len(r.Attrs) }}, true
	}
	x, ok := build(n.Arguments[0])
	if !ok || x.t != tString {
		return val{}, false
	}
	s := x.s
	// In runes, as expr counts.
	return val{t: tInt, konst: x.konst, i: func(r *bus.Record) int { return utf8.RuneCountInString(s(r)) }}, true
}

func binary(n *ast.BinaryNode) (val, bool) {
	if n.Operator == "in" {
		return in(n)
	}
	l, ok := build(n.Left)
	if !ok {
		return val{}, false
	}
	if n.Operator == "matches" {
		return matches(l, n.Right)
	}
	r, ok := build(n.Right)
	if !ok {
		return val{}, false
	}
	k := l.konst && r.konst
	switch n.Operator {
	case "&&", "and":
		if l.t == tBool && r.t == tBool {
			a, b := l.b, r.b
			return val{t: tBool, konst: k, b: func(x *bus.Record) bool { return a(x) && b(x) }}, true
		}
	case "||", "or":
		if l.t == tBool && r.t == tBool {
			a, b := l.b, r.b
			return val{t: tBool, konst: k, b: func(x *bus.Record) bool { return a(x) || b(x) }}, true
		}
	case "==", "!=", "<", "<=", ">", ">=":
		return compare(n.Operator, n.Left, l, r)
	case "+", "-", "*", "/", "%", "**", "^":
		return arith(n.Operator, l, r)
	case "startsWith", "endsWith", "contains":
		if l.t != tString || r.t != tString {
			return val{}, false
		}
		f := strings.HasPrefix
		switch n.Operator {
		case "endsWith":
			f = strings.HasSuffix
		case "contains":
			f = strings.Contains
		}
		a, b := l.s, r.s
		if r.konst {
			c := b(nil)
			return val{t: tBool, konst: k, b: func(x *bus.Record) bool { return f(a(x), c) }}, true
		}
		return val{t: tBool, konst: k, b: func(x *bus.Record) bool { return f(a(x), b(x)) }}, true
	}
	return val{}, false
}

func isNum(t typ) bool { return t == tInt || t == tFloat }

func toFloat(v val) func(*bus.Record) float64 {
	if v.t == tFloat {
		return v.f
	}
	i := v.i
	return func(r *bus.Record) float64 { return float64(i(r)) }
}

type ordered interface{ ~int | ~float64 | ~string }

// compare builds op over l and r. left is l's node, for enumCompare; nil
// when there is none.
func compare(op string, left ast.Node, l, r val) (val, bool) {
	k := l.konst && r.konst
	var b func(*bus.Record) bool
	switch {
	case l.t == tString && r.t == tString:
		if eq, ok := enumCompare(op, left, r); ok {
			b = eq
		} else {
			b = cmp(op, l.s, r.s, l.konst, r.konst)
		}
	case l.t == tInt && r.t == tInt:
		b = cmp(op, l.i, r.i, l.konst, r.konst)
	case isNum(l.t) && isNum(r.t):
		b = cmp(op, toFloat(l), toFloat(r), l.konst, r.konst)
	case l.t == tBool && r.t == tBool && (op == "==" || op == "!="):
		x, y := l.b, r.b
		if op == "==" {
			b = func(rec *bus.Record) bool { return x(rec) == y(rec) }
		} else {
			b = func(rec *bus.Record) bool { return x(rec) != y(rec) }
		}
	default:
		return val{}, false
	}
	return val{t: tBool, konst: k, b: b}, true
}

// enumCompare turns quality == "GOOD" and kind == "double" into a comparison
// of the enum the record holds, skipping its String form. Only names that
// parse qualify; anything else compares as strings.
func enumCompare(op string, left ast.Node, r val) (func(*bus.Record) bool, bool) {
	id, ok := left.(*ast.IdentifierNode)
	if !ok || !r.konst || (op != "==" && op != "!=") {
		return nil, false
	}
	c := r.s(nil)
	eq := op == "=="
	switch id.Value {
	case "quality":
		q, err := bus.ParseQuality(c)
		if err != nil {
			return nil, false
		}
		return func(x *bus.Record) bool { return (x.Quality == q) == eq }, true
	case "kind", "type":
		for k := bus.KindNull; k <= bus.KindBytes; k++ {
			if k.String() == c {
				return func(x *bus.Record) bool { return (x.Value.Kind == k) == eq }, true
			}
		}
	}
	return nil, false
}

// cmp builds a comparison, reading a constant operand once rather than
// calling its closure per record.
func cmp[T ordered](op string, l, r func(*bus.Record) T, lk, rk bool) func(*bus.Record) bool {
	if lk && !rk {
		// c op x is x flip(op) c; NaN is false either way round.
		return cmp(flip(op), r, l, false, true)
	}
	if rk {
		c := r(nil)
		switch op {
		case "==":
			return func(x *bus.Record) bool { return l(x) == c }
		case "!=":
			return func(x *bus.Record) bool { return l(x) != c }
		case "<":
			return func(x *bus.Record) bool { return l(x) < c }
		case "<=":
			return func(x *bus.Record) bool { return l(x) <= c }
		case ">":
			return func(x *bus.Record) bool { return l(x) > c }
		case ">=":
			return func(x *bus.Record) bool { return l(x) >= c }
		}
	}
	switch op {
	case "==":
		return func(x *bus.Record) bool { return l(x) == r(x) }
	case "!=":
		return func(x *bus.Record) bool { return l(x) != r(x) }
	case "<":
		return func(x *bus.Record) bool { return l(x) < r(x) }
	case "<=":
		return func(x *bus.Record) bool { return l(x) <= r(x) }
	case ">":
		return func(x *bus.Record) bool { return l(x) > r(x) }
	case ">=":
		return func(x *bus.Record) bool { return l(x) >= r(x) }
	}
	panic("where: unknown comparison " + op)
}

func flip(op string) string {
	switch op {
	case "<":
		return ">"
	case "<=":
		return ">="
	case ">":
		return "<"
	case ">=":
		return "<="
	}
	return op
}

func arith(op string, l, r val) (val, bool) {
	if !isNum(l.t) || !isNum(r.t) {
		return val{}, false
	}
	k := l.konst && r.konst
	switch op {
	case "/":
		a, b := toFloat(l), toFloat(r)
		return val{t: tFloat, konst: k, f: func(x *bus.Record) float64 { return a(x) / b(x) }}, true
	case "**", "^":
		a, b := toFloat(l), toFloat(r)
		return val{t: tFloat, konst: k, f: func(x *bus.Record) float64 { return math.Pow(a(x), b(x)) }}, true
	case "%":
		if l.t != tInt || r.t != tInt || !r.konst {
			return val{}, false
		}
		c := r.i(nil)
		if c == 0 {
			return val{}, false
		}
		a := l.i
		return val{t: tInt, konst: k, i: func(x *bus.Record) int { return a(x) % c }}, true
	}
	if l.t == tInt && r.t == tInt {
		a, b := l.i, r.i
		switch op {
		case "+":
			return val{t: tInt, konst: k, i: func(x *bus.Record) int { return a(x) + b(x) }}, true
		case "-":
			return val{t: tInt, konst: k, i: func(x *bus.Record) int { return a(x) - b(x) }}, true
		case "*":
			return val{t: tInt, konst: k, i: func(x *bus.Record) int { return a(x) * b(x) }}, true
		}
		return val{}, false
	}
	a, b := toFloat(l), toFloat(r)
	switch op {
	case "+":
		return val{t: tFloat, konst: k, f: func(x *bus.Record) float64 { return a(x) + b(x) }}, true
	case "-":
		return val{t: tFloat, konst: k, f: func(x *bus.Record) float64 { return a(x) - b(x) }}, true
	case "*":
		return val{t: tFloat, konst: k, f: func(x *bus.Record) float64 { return a(x) * b(x) }}, true
	}
	return val{}, false
}

func matches(l val, right ast.Node) (val, bool) {
	r, ok := build(right)
	if !ok || l.t != tString || r.t != tString || !r.konst {
		return val{}, false
	}
	re, err := regexp.Compile(r.s(nil))
	if err != nil {
		return val{}, false
	}
	s := l.s
	return val{t: tBool, konst: l.konst, b: func(x *bus.Record) bool { return re.MatchString(s(x)) }}, true
}

// in handles membership in a constant array and in attrs. The array test
// mirrors expr's, which compares each element with ==: an int needle equals a
// float element of the same value, and elements of another type never match.
func in(n *ast.BinaryNode) (val, bool) {
	l, ok := build(n.Left)
	if !ok {
		return val{}, false
	}
	if isAttrs(n.Right) {
		if l.t != tString {
			return val{}, false
		}
		s := l.s
		return val{t: tBool, b: func(x *bus.Record) bool {
			_, ok := x.Attrs[s(x)]
			return ok
		}}, true
	}
	arr, ok := n.Right.(*ast.ArrayNode)
	if !ok {
		return val{}, false
	}
	elems := make([]val, len(arr.Nodes))
	konst := true
	for i, e := range arr.Nodes {
		v, ok := build(e)
		if !ok {
			return val{}, false
		}
		elems[i] = v
		konst = konst && v.konst
	}
	if !konst {
		return inDynamic(n.Left, l, elems)
	}
	var (
		strs   []string
		ints   []int
		floats []float64
	)
	for _, v := range elems {
		switch v.t {
		case tString:
			strs = append(strs, v.s(nil))
		case tInt:
			ints = append(ints, v.i(nil))
		case tFloat:
			floats = append(floats, v.f(nil))
		default:
			return val{}, false
		}
	}
	switch l.t {
	case tString:
		return val{t: tBool, konst: l.konst, b: stringIn(l.s, strs)}, true
	case tInt:
		li := l.i
		return val{t: tBool, konst: l.konst, b: func(x *bus.Record) bool {
			v := li(x)
			for _, c := range ints {
				if v == c {
					return true
				}
			}
			f := float64(v)
			for _, c := range floats {
				if f == c {
					return true
				}
			}
			return false
		}}, true
	case tFloat:
		lf := l.f
		return val{t: tBool, konst: l.konst, b: func(x *bus.Record) bool {
			v := lf(x)
			for _, c := range floats {
				if v == c {
					return true
				}
			}
			for _, c := range ints {
				if v == float64(c) {
					return true
				}
			}
			return false
		}}, true
	}
	return val{}, false
}

// inDynamic is membership in an array with elements read from the record:
// one == per element, skipping elements of a type that never equals l.
func inDynamic(left ast.Node, l val, elems []val) (val, bool) {
	var eqs []func(*bus.Record) bool
	for _, e := range elems {
		switch {
		case l.t == tString && e.t == tString, isNum(l.t) && isNum(e.t):
			eq, ok := compare("==", left, l, e)
			if !ok {
				return val{}, false
			}
			eqs = append(eqs, eq.b)
		case l.t != tString && !isNum(l.t):
			return val{}, false
		}
	}
	return val{t: tBool, b: func(x *bus.Record) bool {
		for _, eq := range eqs {
			if eq(x) {
				return true
			}
		}
		return false
	}}, true
}

// stringIn scans short lists, where a scan beats hashing the needle, and
// uses a set for long ones.
func stringIn(s func(*bus.Record) string, list []string) func(*bus.Record) bool {
	if len(list) <= 8 {
		return func(x *bus.Record) bool {
			v := s(x)
			for _, c := range list {
				if v == c {
					return true
				}
			}
			return false
		}
	}
	set := make(map[string]struct{}, len(list))
	for _, c := range list {
		set[c] = struct{}{}
	}
	return func(x *bus.Record) bool {
		_, ok := set[s(x)]
		return ok
	}
}
