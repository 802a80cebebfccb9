package conf

import (
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Resolver looks up the values that ${...} references stand for. Tests and
// `ferry validate` can give their own; the zero value uses the process
// environment and the file system.
type Resolver struct {
	Env      func(string) (string, bool)
	ReadFile func(string) ([]byte, error)
}

func (r Resolver) env(k string) (string, bool) {
	if r.Env != nil {
		return r.Env(k)
	}
	return os.LookupEnv(k)
}

func (r Resolver) readFile(p string) ([]byte, error) {
	if r.ReadFile != nil {
		return r.ReadFile(p)
	}
	return os.ReadFile(p)
}

// Interpolate replaces ${NAME}, ${NAME:-default} and ${file:PATH} in every
// scalar value (never in keys) so that secrets need not be written into the
// file. "$$" stands for a literal "$". A file's trailing newline is dropped,
// since secret files usually end with one. Values are substituted after
// parsing, so a secret cannot inject YAML structure.
func (s *Source) Interpolate(r Resolver) Errors {
	var errs Errors
	var walk func(n *yaml.Node, isKey bool)
	walk = func(n *yaml.Node, isKey bool) {
		switch n.Kind {
		case yaml.ScalarNode:
			if isKey || !strings.Contains(n.Value, "$") {
				return
			}
			v, err := expand(n.Value, r)
			if err != "" {
				errs = append(errs, s.At(n, "", "%s", err))
				// Leave a null, not the unresolved text, so decoding does
				// not report the same spot again as a type error.
				n.Value, n.Tag, n.Style = "", "!!null", 0
				return
			}
			if v != n.Value {
				n.Value = v
				if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
					n.Tag = "" // let the resolved text pick its own type (a port number from $PORT)
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i], true)
				walk(n.Content[i+1], false)
			}
		case yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, false)
			}
		}
	}
	walk(s.Root, false)
	return errs
}

func expand(in string, r Resolver) (string, string) {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c != '$' || i+1 >= len(in) {
			b.WriteByte(c)
			continue
		}
		switch in[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{':
		default:
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(in[i+2:], '}')
		if end < 0 {
			return "", "unterminated ${ in " + quote(in) + "; write $$ for a literal $"
		}
		ref := in[i+2 : i+2+end]
		i += 2 + end
		if path, ok := strings.CutPrefix(ref, "file:"); ok {
			data, err := r.readFile(path)
			if err != nil {
				return "", "${file:" + path + "}: " + err.Error()
			}
			b.WriteString(strings.TrimRight(string(data), "\r\n"))
			continue
		}
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", "${" + ref + "} is not a reference; expected ${NAME}, ${NAME:-default} or ${file:PATH}"
		}
		if v, ok := r.env(name); ok && (v != "" || !hasDef) {
			b.WriteString(v)
		} else if hasDef {
			b.WriteString(def)
		} else {
			return "", "environment variable " + name + " is not set (use ${" + name + ":-default} for a default)"
		}
	}
	return b.String(), ""
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}

// Recorder wraps a Resolver and remembers every answer it gave, so that the
// same document can be interpolated again later to exactly the same values
// (Replay), even if the environment or a secret file has changed since.
type Recorder struct {
	r     Resolver
	env   map[string]envAnswer
	files map[string]fileAnswer
}

type envAnswer struct {
	v  string
	ok bool
}

type fileAnswer struct {
	b   []byte
	err error
}

// Record starts remembering r's answers.
func Record(r Resolver) *Recorder {
	return &Recorder{r: r, env: map[string]envAnswer{}, files: map[string]fileAnswer{}}
}

// Resolver answers from the wrapped one and remembers.
func (c *Recorder) Resolver() Resolver {
	return Resolver{
		Env: func(k string) (string, bool) {
			v, ok := c.r.env(k)
			c.env[k] = envAnswer{v, ok}
			return v, ok
		},
		ReadFile: func(p string) ([]byte, error) {
			b, err := c.r.readFile(p)
			c.files[p] = fileAnswer{b, err}
			return b, err
		},
	}
}

// Replay answers what was remembered; anything never asked is unset (an
// environment variable) or not found (a file).
func (c *Recorder) Replay() Resolver {
	return Resolver{
		Env: func(k string) (string, bool) {
			a := c.env[k]
			return a.v, a.ok
		},
		ReadFile: func(p string) ([]byte, error) {
			a, ok := c.files[p]
			if !ok {
				return nil, os.ErrNotExist
			}
			return a.b, a.err
		},
	}
}
