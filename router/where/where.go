// Package where compiles a route's where expression into a predicate over
// records.
//
// Expressions are written in expr (github.com/expr-lang/expr) over these
// names, all read from the record:
//
//	source, device, tag, unit  string
//	value    float64  the numeric view of the value (booleans are 0 and 1); NaN when not numeric
//	text     string   the value as text: strings as they are, other kinds as bus.Value.String renders them
//	type     string   "null", "boolean", "long", "double", "string" or "bytes":
//	                  the record's type field, as JSON output names it
//	kind     string   the same as type (its first name, kept)
//	quality  string   "GOOD", "UNCERTAIN" or "BAD"
//	status   int      the protocol's raw status code
//	seq      int      the per-source sequence number (wraps negative above MaxInt64)
//	attrs    map[string]string; a missing attribute reads as ""
//
// The expression must be boolean. The clock is not available (the builtin now
// is disabled), so that a filter gives the same answer live and on replay.
//
// Compile uses expr to parse and type-check once, then translates the checked
// tree into Go closures that read the record directly. expr's own VM boxes every
// value it touches and would allocate per record; the closures do not. An
// expression outside the translated subset (see fast.go) runs on expr's VM
// instead, with the same answers at a higher cost (about 130 ns and one
// allocation or more per record, against under 10 ns and none). On the VM, an
// evaluation that fails at run time, such as a modulo by a zero status, counts
// as no match; the translated subset cannot fail.
package where

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Predicate reports whether a record passes the filter. It is safe for
// concurrent use.
type Predicate func(r *bus.Record) bool

// ErrInvalidExpr is wrapped by every error Compile returns.
var ErrInvalidExpr = errors.New("invalid where expression")

// Error is a compile error with its position in the expression, so that the
// config loader can point at the offending character in the file.
type Error struct {
	Expr    string
	Line    int    // 1-based line within Expr
	Column  int    // 1-based column in runes within that line
	Message string // expr's message, without position
	Snippet string // the offending line with a caret under Column, for terminals

	cause error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (line %d, column %d)", e.Message, e.Line, e.Column)
}

// Unwrap exposes the sentinel and expr's own *file.Error.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalidExpr}
	}
	return []error{ErrInvalidExpr, e.cause}
}

// env is what expr sees. The field set and its expr names are the language
// described in the package comment; fast.go reads the same names from the
// record directly and must stay in step with fill.
type env struct {
	Source  string            `expr:"source"`
	Device  string            `expr:"device"`
	Tag     string            `expr:"tag"`
	Unit    string            `expr:"unit"`
	Value   float64           `expr:"value"`
	Text    string            `expr:"text"`
	Kind    string            `expr:"kind"`
	Type    string            `expr:"type"` // shadows expr's builtin type(); the record's field comes first
	Quality string            `expr:"quality"`
	Status  int               `expr:"status"`
	Seq     int               `expr:"seq"`
	Attrs   map[string]string `expr:"attrs"`
}

// fill copies r into e. Text is rendered only when asked for, since rendering
// a number allocates.
func (e *env) fill(r *bus.Record, withText bool) {
	e.Source = r.Source
	e.Device = r.Device
	e.Tag = r.Tag
	e.Unit = r.Unit
	e.Value = numeric(r.Value)
	e.Text = ""
	if withText {
		e.Text = text(r.Value)
	}
	e.Kind = r.Value.Kind.String()
	e.Type = e.Kind
	e.Quality = r.Quality.String()
	e.Status = int(r.Status)
	e.Seq = int(r.Seq)
	e.Attrs = r.Attrs
}

func numeric(v bus.Value) float64 {
	if f, ok := v.Float(); ok {
		return f
	}
	return math.NaN()
}

func text(v bus.Value) string {
	if v.Kind == bus.KindString {
		return v.Str()
	}
	return v.String()
}

func options(extra ...expr.Option) []expr.Option {
	return append([]expr.Option{
		expr.Env(env{}),
		expr.AsBool(),
		expr.WarnOnAny(), // an expression that is not provably bool is an error, not a runtime surprise
		expr.DisableBuiltin("now"),
	}, extra...)
}

// Compile compiles src once. The error, if any, is an *Error.
func Compile(src string) (Predicate, error) {
	c, err := compile(src)
	if err != nil {
		return nil, err
	}
	return c.pred, nil
}

// panicPrefix marks a compile error that was a recovered panic, which the
// fuzz tests treat as a bug.
const panicPrefix = "internal error compiling the expression: "

type compiled struct {
	pred Predicate
	fast bool // pred is the closure translation, not the VM
	prog *vm.Program
}

func compile(src string) (c *compiled, err error) {
	defer func() {
		// expr is third-party code running on user input at load time; a panic
		// in it must fail this route's validation, not the process.
		if r := recover(); r != nil {
			c, err = nil, &Error{Expr: src, Line: 1, Column: 1, Message: fmt.Sprintf("%s%v", panicPrefix, r)}
		}
	}()
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Expr: src, Line: 1, Column: 1, Message: "empty expression"}
	}
	prog, err := expr.Compile(src, options()...)
	if err != nil {
		return nil, wrapErr(src, err)
	}
	// The translation walks the tree as checked but not optimised: the
	// optimiser rewrites nodes into shapes (constant maps, folded calls) that
	// differ between expr versions, while the checked tree is the language.
	plain, err := expr.Compile(src, options(expr.Optimize(false))...)
	if err != nil {
		return nil, wrapErr(src, err)
	}
	if err := vet(src, plain.Node()); err != nil {
		return nil, err
	}
	if b, ok := translate(plain.Node()); ok {
		return &compiled{pred: Predicate(b), fast: true, prog: prog}, nil
	}
	return &compiled{pred: fallback(prog), prog: prog}, nil
}

func wrapErr(src string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := fe.Line, fe.Column+1
		if line == 0 { // not bound to the source: no position known
			line, col = 1, 1
		}
		return &Error{Expr: src, Line: line, Column: col, Message: explain(fe.Message), Snippet: fe.Snippet, cause: fe}
	}
	// Errors about the whole expression, such as its result type, carry no
	// position; they concern the expression from its start.
	return &Error{Expr: src, Line: 1, Column: 1, Message: err.Error(), cause: err}
}

// Names lists the names an expression can use, in the order the package
// comment gives them.
var Names = []string{"source", "device", "tag", "unit", "value", "text", "type", "kind", "quality", "status", "seq", "attrs"}

var unknownName = regexp.MustCompile(`^unknown name (\S+)$`)

// explain adds to expr's message what a person writing a filter needs: the
// names there are, and that a comparison is written ==.
func explain(msg string) string {
	if m := unknownName.FindStringSubmatch(msg); m != nil {
		hint := ""
		if s := conf.Suggest(m[1], Names); s != "" {
			hint = "did you mean " + s + "? "
		}
		return fmt.Sprintf("unknown name %s; %snames are %s (and attrs.NAME or attrs[\"NAME\"] for an attribute)", m[1], hint, strings.Join(Names, ", "))
	}
	if msg == `unexpected token Operator("=")` {
		return `"=" is not a comparison; write == to compare (tag == "a"), != for the opposite`
	}
	return msg
}

// vet rejects what expr accepts but can only fail at run time. A modulo by a
// constant zero would make the route silently match nothing.
func vet(src string, tree ast.Node) error {
	var bad ast.Node
	ast.Find(tree, func(n ast.Node) bool {
		b, ok := n.(*ast.BinaryNode)
		if !ok || b.Operator != "%" || bad != nil {
			return false
		}
		if d, ok := build(b.Right); ok && d.konst && d.t == tInt && d.i(nil) == 0 {
			bad = b
		}
		return false
	})
	if bad == nil {
		return nil
	}
	fe := &file.Error{Location: bad.Location(), Message: "modulo by zero"}
	fe = fe.Bind(file.NewSource(src))
	return &Error{Expr: src, Line: fe.Line, Column: fe.Column + 1, Message: fe.Message, Snippet: fe.Snippet, cause: fe}
}

// fallback runs prog on expr's VM. VMs and envs are pooled because the engine
// runs routes concurrently; a runtime error (such as a modulo by zero) makes
// the record not match, which is what expr.Run's error would mean to a filter.
func fallback(prog *vm.Program) Predicate {
	withText := false
	ast.Find(prog.Node(), func(n ast.Node) bool {
		if id, ok := n.(*ast.IdentifierNode); ok && (id.Value == "text" || id.Value == "$env") {
			withText = true
		}
		return false
	})
	pool := sync.Pool{New: func() any { return new(fallbackState) }}
	return func(r *bus.Record) bool {
		st := pool.Get().(*fallbackState)
		st.env.fill(r, withText)
		out, err := st.vm.Run(prog, &st.env)
		st.env.Attrs = nil // do not keep a record's map alive in the pool
		pool.Put(st)
		b, ok := out.(bool)
		return err == nil && ok && b
	}
}

type fallbackState struct {
	env env
	vm  vm.VM
}
