package conf

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	goccy "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"go.yaml.in/yaml/v3"
)

// Source is one parsed YAML file: its name for error messages and its root.
type Source struct {
	File string
	Root *yaml.Node // the document's top node (a mapping for ferry.yaml)
}

// Parse parses data as one YAML document. A syntax error comes back as
// Errors with the line (and column where the parser gives one).
func Parse(file string, data []byte) (*Source, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(file, data, err)}
	}
	src := &Source{File: file, Root: &doc}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		src.Root = doc.Content[0]
	}
	if doc.Kind == 0 { // empty file
		src.Root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	return src, nil
}

var (
	syntaxLine = regexp.MustCompile(`^yaml: line (\d+):(?: column (\d+):)? ?(.*)$`)
	typeLine   = regexp.MustCompile(`^line (\d+)(?::(\d+))?: (.*)$`)
)

// syntaxError positions a parse error. yaml.v3 reports the line where the
// enclosing block started, not where the mistake is (a mis-indented key
// four lines down is reported at the top of its section), and no column; so
// the text is parsed again with goccy/go-yaml, whose scanner reports the
// offending token, and its position is used when it finds the error too.
// Neither says what is wrong with an indentation ("value is not allowed in
// this context"), so a mistake of that kind is looked for first and told in
// plain words.
func syntaxError(file string, data []byte, err error) *Error {
	if line, col, msg, ok := indentProblem(data); ok {
		return &Error{File: file, Line: line, Col: col, Msg: "yaml: " + msg}
	}
	if _, gerr := goccyparser.ParseBytes(data, 0); gerr != nil {
		var se *goccy.SyntaxError
		if errors.As(gerr, &se) && se.Token != nil && se.Token.Position != nil {
			return &Error{File: file, Line: se.Token.Position.Line, Col: se.Token.Position.Column, Msg: "yaml syntax: " + se.Message}
		}
	}
	msg := err.Error()
	e := &Error{File: file, Line: 1, Col: 1, Msg: "yaml syntax: " + strings.TrimPrefix(msg, "yaml: ")}
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			e.Col, _ = strconv.Atoi(m[2])
		}
		e.Msg = "yaml syntax: " + m[3]
	}
	return e
}

// At returns an Error positioned at n.
func (s *Source) At(n *yaml.Node, path, format string, args ...any) *Error {
	e := &Error{File: s.File, Path: path, Msg: withHint(fmt.Sprintf(format, args...))}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

// Decode decodes n into v (a pointer to a struct, usually) strictly: every
// key the target does not declare is an error naming the valid keys, and
// every type or value error is reported with its position. It collects all
// problems rather than stopping at the first. path prefixes the field paths
// in messages.
func (s *Source) Decode(n *yaml.Node, v any, path string) Errors {
	var errs Errors
	s.unknownKeys(n, reflect.TypeOf(v), path, &errs)
	if err := n.Decode(v); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return append(errs, s.At(n, path, "%v", err))
		}
		for _, m := range te.Errors {
			errs = append(errs, s.typeError(n, path, m))
		}
	}
	errs.Sort()
	return errs
}

// typeError turns one of yaml's "line N: cannot unmarshal ..." strings, or one
// of ours ("line N:C: ..."), into a positioned Error. yaml gives no column, so
// it is found from the scalar the message quotes.
func (s *Source) typeError(root *yaml.Node, path, msg string) *Error {
	m := typeLine.FindStringSubmatch(msg)
	if m == nil {
		return s.At(root, path, "%s", msg)
	}
	line, _ := strconv.Atoi(m[1])
	e := &Error{File: s.File, Line: line, Col: 1, Msg: m[3]}
	if m[2] != "" {
		e.Col, _ = strconv.Atoi(m[2])
	}
	var quoted string
	if i := strings.IndexByte(m[3], '`'); i >= 0 {
		if j := strings.IndexByte(m[3][i+1:], '`'); j >= 0 {
			quoted = m[3][i+1 : i+1+j]
		}
	}
	col := 0
	if m[2] != "" {
		col = e.Col
	}
	if n, p := findNode(root, line, col, quoted, path); n != nil {
		e.Col = n.Column
		e.Path = p
	}
	e.Msg = friendlyType(e.Msg)
	return e
}

var unmarshalMsg = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$")

// friendlyType rewrites yaml's Go-flavoured message into what a person
// editing the file needs: what was found and what kind of value fits.
func friendlyType(msg string) string {
	m := unmarshalMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := m[3]
	switch {
	case strings.HasPrefix(want, "int") || strings.HasPrefix(want, "uint"):
		want = "a whole number"
	case strings.HasPrefix(want, "float"):
		want = "a number"
	case want == "bool":
		want = "true or false"
	case want == "string":
		want = "a string"
	case strings.HasPrefix(want, "[]") || strings.HasSuffix(want, "List"):
		want = "a list"
	case strings.HasPrefix(want, "map[") || strings.Contains(want, "."):
		want = "a mapping of keys"
	}
	found := map[string]string{"str": "string", "int": "number", "float": "number", "bool": "boolean", "seq": "list", "map": "mapping", "null": "null"}[m[1]]
	if found == "" {
		found = m[1]
	}
	if m[2] != "" && len(m[2]) < 60 {
		return fmt.Sprintf("%s %q where %s is expected", found, m[2], want)
	}
	return fmt.Sprintf("a %s where %s is expected", found, want)
}

// findNode finds the node a yaml message speaks of: the one at line:col
// when the column is known, else the scalar on line whose value the message
// quotes, else the first scalar on line; and the field path leading to it.
func findNode(root *yaml.Node, line, col int, quoted, path string) (*yaml.Node, string) {
	var best *yaml.Node
	var bestPath string
	score := func(n *yaml.Node) int {
		switch {
		case n.Line != line:
			return 0
		case col > 0 && n.Column == col && n.Kind == yaml.ScalarNode:
			return 4
		case col > 0 && n.Column == col:
			return 3
		case quoted != "" && n.Kind == yaml.ScalarNode && n.Value == quoted:
			return 2
		case n.Kind == yaml.ScalarNode:
			return 1
		}
		return 0
	}
	bestScore := 0
	var walk func(n *yaml.Node, p string)
	walk = func(n *yaml.Node, p string) {
		if sc := score(n); sc > bestScore {
			best, bestPath, bestScore = n, p, sc
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], Join(p, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, p+"["+strconv.Itoa(i)+"]")
			}
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, p)
			}
		}
	}
	walk(root, path)
	return best, bestPath
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

// unknownKeys walks n alongside t and reports keys t does not declare. yaml's
// own KnownFields works only on a whole-document Decoder, stops at the first
// unknown key and has no column; this reports them all, where they are.
func (s *Source) unknownKeys(n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	if n == nil || t == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return
		}
		t = t.Elem()
	}
	if t == nodeType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // yaml reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		var anyMap reflect.Type
		collectFields(t, fields, &anyMap)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			switch {
			case ok:
				s.unknownKeys(val, ft, Join(path, k.Value), errs)
			case anyMap != nil:
				s.unknownKeys(val, anyMap.Elem(), Join(path, k.Value), errs)
			default:
				*errs = append(*errs, s.At(k, Join(path, k.Value), "unknown key %q;%s valid keys here are %s", k.Value, meant(k.Value, fields), validKeys(fields)))
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			s.unknownKeys(n.Content[i+1], t.Elem(), Join(path, n.Content[i].Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			s.unknownKeys(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	}
}

func collectFields(t reflect.Type, fields map[string]reflect.Type, anyMap *reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				*anyMap = ft
			} else if ft.Kind() == reflect.Struct {
				collectFields(ft, fields, anyMap)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
}

// meant is the " did you mean x?" of an unknown key, or "".
func meant(key string, fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys) // ties go to the first in the listing
	if s := Suggest(key, keys); s != "" {
		return " did you mean " + s + "?"
	}
	return ""
}

func validKeys(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "(none)"
	}
	return strings.Join(keys, ", ")
}

// Locate resolves a field path ("registers[3].type", "devices[plc1]") under n
// to the node it names, or to the deepest node that exists on the way. A
// bracketed name matches a mapping key or the element of a list whose "name"
// key has that value, so paths can speak of things by their names.
func Locate(n *yaml.Node, path string) *yaml.Node {
	cur := n
	for _, seg := range splitPath(path) {
		next := child(cur, seg)
		if next == nil {
			return cur
		}
		cur = next
	}
	return cur
}

func splitPath(path string) []string {
	var segs []string
	for path != "" {
		switch {
		case path[0] == '.':
			path = path[1:]
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(segs, path)
			}
			segs = append(segs, path[:end+1])
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			segs = append(segs, path[:end])
			path = path[end:]
		}
	}
	return segs
}

func child(n *yaml.Node, seg string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	key := seg
	if strings.HasPrefix(seg, "[") {
		key = strings.TrimSuffix(strings.TrimPrefix(seg, "["), "]")
		if n.Kind == yaml.SequenceNode {
			if i, err := strconv.Atoi(key); err == nil {
				if i >= 0 && i < len(n.Content) {
					return n.Content[i]
				}
				return nil
			}
			for _, c := range n.Content {
				if v := MapValue(c, "name"); v != nil && v.Value == key {
					return c
				}
			}
			return nil
		}
	}
	return MapValue(n, key)
}

// MapValue returns the value of key in mapping n, or nil.
func MapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// MapKey returns the key node of key in mapping n, or nil.
func MapKey(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// Positioned turns the errors a Validate returned for the section at n
// (whose own path is prefix) into positioned Errors.
func (s *Source) Positioned(n *yaml.Node, prefix string, err error) Errors {
	var out Errors
	for _, e := range Flatten(err) {
		var fe *FieldError
		var pe *Error
		switch {
		case errors.As(e, &pe):
			out = append(out, pe)
		case errors.As(e, &fe):
			out = append(out, s.At(Locate(n, fe.Path), Join(prefix, fe.Path), "%s", fe.Msg))
		default:
			out = append(out, s.At(n, prefix, "%v", e))
		}
	}
	return out
}
