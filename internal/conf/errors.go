// Package conf holds what every part of ferry needs to read its YAML
// strictly: positioned errors, a decoder that rejects unknown keys at any
// depth, field paths that resolve back to a line and column, secret
// interpolation, and the duration and size scalars.
package conf

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalidConfig is wrapped by every error this package reports, so callers
// can tell a config problem from an I/O failure.
var ErrInvalidConfig = errors.New("invalid config")

// Error is one problem at one place in a file.
type Error struct {
	File string
	Line int
	Col  int
	Path string // dotted field path, e.g. connectors.plc1.registers[3].type
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Col)
	} else if e.File != "" {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return ErrInvalidConfig }

// Errors is every problem found in one load, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sort orders errors by position so the output reads top to bottom.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].before(es[j]) })
}

// before orders by position: file, then line, then column.
func (e *Error) before(o *Error) bool {
	if e.File != o.File {
		return e.File < o.File
	}
	if e.Line != o.Line {
		return e.Line < o.Line
	}
	return e.Col < o.Col
}

// Err returns es as an error, or nil when there is none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	es.Sort()
	return es
}

// FieldError is what a Validate method returns: a problem with a field named
// by its path relative to the section being validated. Validate is pure and
// knows no positions; the loader resolves Path to a line and column.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// Field builds a FieldError. Messages should say what is expected, listing
// the valid values where there are few.
func Field(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Problems collects FieldErrors during Validate.
type Problems []error

// Add records a problem at path.
func (p *Problems) Add(path, format string, args ...any) {
	*p = append(*p, Field(path, format, args...))
}

// Nest adds the errors of a nested Validate, prefixing their paths.
func (p *Problems) Nest(prefix string, err error) {
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			*p = append(*p, &FieldError{Path: Join(prefix, fe.Path), Msg: fe.Msg})
			continue
		}
		*p = append(*p, &FieldError{Path: prefix, Msg: e.Error()})
	}
}

// Err returns the collected problems joined, or nil.
func (p Problems) Err() error { return errors.Join(p...) }

// Flatten unpacks joined errors into a flat list.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Join joins two path parts with a dot, leaving index suffixes attached.
func Join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case path[0] == '[':
		return prefix + path
	}
	return prefix + "." + path
}
