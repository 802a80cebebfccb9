package conf

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Warning is something in a file that loads but probably does not do what
// was meant: a source routed nowhere, a secret in clear text. It has the
// same FILE:LINE:COL form as an Error, but never stops a load.
type Warning struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

// String is "FILE:LINE:COL: warning: PATH: MESSAGE", the form compilers
// use, so that editors list warnings next to errors.
func (w *Warning) String() string {
	e := Error(*w)
	e.Path = "warning: " + e.Path
	if w.Path == "" {
		e.Path = ""
		e.Msg = "warning: " + e.Msg
	}
	return e.Error()
}

// Warn returns a Warning positioned at n.
func (s *Source) Warn(n *yaml.Node, path, format string, args ...any) *Warning {
	w := &Warning{File: s.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		w.Line, w.Col = n.Line, n.Column
	}
	return w
}

// SortWarnings orders warnings by position, so they read top to bottom.
func SortWarnings(ws []*Warning) {
	sort.SliceStable(ws, func(i, j int) bool { return (*Error)(ws[i]).before((*Error)(ws[j])) })
}

// secretKeys are keys whose value is a credential. The READMEs tell users
// to write these as ${ENV} or ${file:PATH}; a *_file or *_hash key holds a
// path or a hash and is not one of them.
var secretKeys = map[string]bool{
	"password": true, "passwd": true, "token": true, "nkey": true, "secret": true,
	"client_secret": true, "api_key": true, "apikey": true, "access_key": true, "secret_key": true,
}

// secretHeaders are HTTP header names whose value is a credential.
var secretHeader = regexp.MustCompile(`(?i)^(authorization|proxy-authorization|x-api-key|api-key|x-auth-token|cookie)$`)

// ClearSecrets reports credentials written into the file as they are. It
// must run before Interpolate, which replaces ${...} with the secret itself.
func (s *Source) ClearSecrets() []*Warning {
	var out []*Warning
	var walk func(n *yaml.Node, path string, inHeaders bool)
	walk = func(n *yaml.Node, path string, inHeaders bool) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := Join(path, k.Value)
				secret := secretKeys[strings.ToLower(k.Value)] || inHeaders && secretHeader.MatchString(k.Value)
				if secret && v.Kind == yaml.ScalarNode && v.Tag != "!!null" && v.Value != "" && !strings.Contains(v.Value, "${") {
					out = append(out, s.Warn(v, p, "%s is written in clear text, where anyone who can read the file (or a backup, or a support bundle) reads it too; write ${%s} to take it from the environment, or ${file:/run/secrets/%s} to read it from a file",
						k.Value, envName(p), strings.ToLower(envName(p))))
					continue
				}
				walk(v, p, k.Value == "headers")
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, path+"["+strconv.Itoa(i)+"]", false)
			}
		}
	}
	walk(s.Root, "", false)
	return out
}

// envName proposes an environment variable for the value at path:
// connectors.cloud.password becomes CLOUD_PASSWORD.
func envName(path string) string {
	path = strings.TrimPrefix(path, "connectors.")
	var b strings.Builder
	for _, r := range path {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "_") {
				b.WriteByte('_')
			}
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

var sizeType = reflect.TypeFor[Size]()

var decimalSize = regexp.MustCompile(`^\s*([0-9.]+)\s*(KB|MB|GB|TB)\s*$`)

// DecimalSizes reports the sizes under n (decoded into v's type) written in
// decimal units. Both kinds are accepted, but "MB" is read as 1000×1000 bytes
// while many people mean 1024×1024 by it (and disk and memory tools print
// MiB as "M"); the warning says what the value is and how to write the
// other, so that nobody finds out by a spool that fills 5% early.
func (s *Source) DecimalSizes(n *yaml.Node, v any, path string) []*Warning {
	var out []*Warning
	s.sizes(n, reflect.TypeOf(v), path, &out)
	return out
}

func (s *Source) sizes(n *yaml.Node, t reflect.Type, path string, out *[]*Warning) {
	if n == nil || t == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if t == sizeType {
		m := decimalSize.FindStringSubmatch(n.Value)
		if n.Kind != yaml.ScalarNode || m == nil {
			return
		}
		dec, err := ParseSize(n.Value)
		if err != nil {
			return
		}
		bin, _ := ParseSize(m[1] + m[2][:1] + "iB")
		*out = append(*out, s.Warn(n, path, "%s is %d bytes: %s counts in powers of 1000; if %s%s were meant (%d bytes), write %s%siB (to keep the decimal value without this warning, write it in bytes)",
			strings.TrimSpace(n.Value), int64(dec), m[2], m[1], m[2][:1]+"iB", int64(bin), m[1], m[2][:1]))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := map[string]reflect.Type{}
		var anyMap reflect.Type
		collectFields(t, fields, &anyMap)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				s.sizes(n.Content[i+1], ft, Join(path, n.Content[i].Value), out)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			s.sizes(n.Content[i+1], t.Elem(), Join(path, n.Content[i].Value), out)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			s.sizes(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}
