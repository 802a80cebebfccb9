package conf

import (
	"fmt"
	"strings"
)

// indentProblem looks for the mistakes behind YAML's "value is not allowed
// in this context" and "did not find expected key": a key or list item in a
// column that lines up with nothing above it, a key indented under a key
// that already has a value, a key in the column of a list's dashes, and an
// unquoted ": " inside a value. It runs only on text that failed to parse,
// to say what is wrong in plain words; where the text uses what it does not
// model (flow collections over several lines, block scalars, quoted strings
// over several lines) it stops and says nothing, leaving the parser's word.
func indentProblem(data []byte) (line, col int, msg string, ok bool) {
	var stack []indentLevel
	// open is set by a line that ends in "key:" or "-" with nothing after
	// it: the next line may start a deeper level.
	var open *indentLevel
	var prevKey *indentLevel // the key on the line above, when it had a value
	blockScalar := -1        // column of the key that opened a | or > scalar
	for i, raw := range strings.Split(string(data), "\n") {
		ln := i + 1
		raw = strings.TrimRight(raw, "\r")
		trimmed := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(trimmed)
		if blockScalar >= 0 {
			if strings.TrimSpace(raw) == "" || indent+1 > blockScalar {
				continue
			}
			blockScalar = -1
		}
		if strings.TrimSpace(trimmed) == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasPrefix(trimmed, "\t") {
			return ln, indent + 1, "a tab in the indentation; YAML indents with spaces only", true
		}
		if strings.HasPrefix(trimmed, "---") || trimmed == "..." || strings.HasPrefix(trimmed, "%") {
			return 0, 0, "", false // several documents: not modelled
		}
		// Peel "- " prefixes: "- key: v" opens a list and a mapping on one line.
		var parts []indentLevel
		rest, pc := trimmed, indent+1
		for rest == "-" || strings.HasPrefix(rest, "- ") {
			parts = append(parts, indentLevel{col: pc, seq: true, line: ln})
			t := strings.TrimLeft(rest[1:], " ")
			pc += len(rest) - len(t)
			rest = t
		}
		key, value, isKey := splitKey(rest)
		if isKey {
			parts = append(parts, indentLevel{col: pc, line: ln, name: key})
		}
		if len(parts) == 0 {
			// A scalar alone on its line: the value of an open key, or a
			// plain scalar continued from the line above (not modelled).
			if open == nil || unbalanced(rest) {
				return 0, 0, "", false
			}
			open, prevKey = nil, nil
			continue
		}
		first := parts[0]
		if open != nil {
			top := len(stack) - 1
			deeper := first.col > open.col
			// A list may sit in its parent key's column: "tags:" then "- a".
			compact := first.seq && first.col == open.col && top >= 0 && !stack[top].seq && stack[top].col == open.col
			open = nil
			if deeper || compact {
				stack = append(stack, first)
				goto placed
			}
		}
		{
			var popped *indentLevel
			for len(stack) > 0 && stack[len(stack)-1].col > first.col {
				l := stack[len(stack)-1]
				popped = &l
				stack = stack[:len(stack)-1]
			}
			top := len(stack) - 1
			switch {
			case top < 0:
				stack = append(stack, first)
			case stack[top].col < first.col:
				what := describe(first.seq, key)
				if popped == nil && prevKey != nil && !first.seq && !stack[top].seq {
					return ln, first.col, fmt.Sprintf("%s starts in column %d, further right than %q on line %d (column %d), which has a value already; the keys of one mapping start in the same column, and only a key with nothing after its colon can have keys under it", what, first.col, prevKey.name+":", prevKey.line, prevKey.col), true
				}
				where := levelWords(stack[top])
				if popped != nil {
					where = levelWords(*popped) + ", and " + where
				}
				return ln, first.col, fmt.Sprintf("%s in column %d lines up with nothing above it: %s", what, first.col, where), true
			case stack[top].seq != first.seq:
				if first.seq {
					return ln, first.col, fmt.Sprintf("a list item in column %d, among the keys of the mapping on line %d; indent the list under the key it belongs to", first.col, stack[top].line), true
				}
				if top > 0 && !stack[top-1].seq && stack[top-1].col == stack[top].col {
					stack = stack[:top] // the end of a list in its key's column
					break
				}
				return ln, first.col, fmt.Sprintf("%s in column %d is in the column of the dashes of the list on line %d; indent it to column %d to put it in the item above, or start a new item with \"- \"", describe(false, key), first.col, stack[top].line, first.col+2), true
			}
		}
	placed:
		stack = append(stack, parts[1:]...)
		last := parts[len(parts)-1]
		prevKey = nil
		switch {
		case !isKey && rest == "":
			open = &last
		case !isKey:
			if unbalanced(rest) {
				return 0, 0, "", false
			}
		case value == "":
			open = &last
		case value[0] == '|' || value[0] == '>':
			blockScalar = last.col
		case unbalanced(value):
			return 0, 0, "", false
		case (value[0] == '&' || value[0] == '!') && !strings.Contains(value, " "):
			open = &last // an anchor or a tag alone: a nested block may follow
		default:
			if q := value[0]; q != '"' && q != '\'' && q != '[' && q != '{' {
				if j := strings.Index(value, ": "); j >= 0 {
					off := strings.Index(rest, ": ") + 1
					off += strings.Index(rest[off:], value)
					return ln, last.col + off + j, fmt.Sprintf("the value of %q holds \": \", which YAML reads as the start of another key; put the value in quotes", key), true
				}
			}
			prevKey = &last
		}
	}
	return 0, 0, "", false
}

// indentLevel is one open block: a mapping's keys or a list's dashes.
type indentLevel struct {
	col  int    // 1-based column of the keys or dashes
	seq  bool   // dashes, else keys
	line int    // where it began
	name string // the key, for a key's own line
}

// splitKey splits "key: value" (or "key:") outside quotes and brackets.
func splitKey(s string) (key, value string, ok bool) {
	if s == "" || s[0] == '[' || s[0] == '{' || s[0] == '#' {
		return "", "", false
	}
	start := 0
	if s[0] == '"' || s[0] == '\'' {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", "", false
		}
		start = end + 2
	}
	for j := start; j < len(s); j++ {
		if s[j] == ':' && (j+1 == len(s) || s[j+1] == ' ') {
			k := strings.Trim(s[:j], `"' `)
			v := strings.TrimSpace(stripComment(s[j+1:]))
			return k, v, true
		}
		if s[j] == ' ' && j+1 < len(s) && s[j+1] == '#' {
			return "", "", false
		}
	}
	return "", "", false
}

// stripComment drops a " # comment" outside quotes.
func stripComment(s string) string {
	var q byte
	for j := 0; j < len(s); j++ {
		switch c := s[j]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			if j == 0 || s[j-1] == ' ' {
				q = c
			}
		case c == '#' && (j == 0 || s[j-1] == ' '):
			return s[:j]
		}
	}
	return s
}

// unbalanced reports a value that goes on over the next lines: an open
// quote or bracket, which this checker does not follow.
func unbalanced(v string) bool {
	v = strings.TrimSpace(stripComment(v))
	if v == "" {
		return false
	}
	if (v[0] == '"' || v[0] == '\'') && (len(v) == 1 || v[len(v)-1] != v[0]) {
		return true
	}
	depth := 0
	var q byte
	for j := 0; j < len(v); j++ {
		switch c := v[j]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		}
	}
	return depth != 0 || q != 0
}

func describe(seq bool, key string) string {
	if seq {
		return "this list item"
	}
	return fmt.Sprintf("%q", key+":")
}

// levelWords says where the lines of a level start.
func levelWords(l indentLevel) string {
	if l.seq {
		return fmt.Sprintf("the list on line %d has its dashes in column %d", l.line, l.col)
	}
	return fmt.Sprintf("the keys on line %d start in column %d", l.line, l.col)
}
