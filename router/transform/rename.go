package transform

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ferry-gateway/ferry/bus"
)

// ErrInvalidTemplate is wrapped by every TemplateError.
var ErrInvalidTemplate = errors.New("invalid rename template")

// TemplateError points at the part of a rename template that does not
// compile.
type TemplateError struct {
	Template string
	Column   int // 1-based, in runes, within Template
	Reason   string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("rename template %q: %s at column %d; valid placeholders are %s",
		e.Template, e.Reason, e.Column, validPlaceholders)
}

func (e *TemplateError) Unwrap() error { return ErrInvalidTemplate }

const validPlaceholders = "{source}, {device}, {tag}, {unit}, {attr.NAME}"

// maxCachedAttrs is how many distinct {attr.NAME} placeholders fit the
// rename cache key. More is possible but renders every record anew.
const maxCachedAttrs = 4

type field uint8

const (
	literal field = iota
	fieldSource
	fieldDevice
	fieldTag
	fieldUnit
	fieldAttr
)

type part struct {
	field field
	text  string // the literal, or the attribute name
	attr  int    // index into renameKey.attrs for fieldAttr
}

// renameKey holds only the inputs the template reads; the others stay empty
// so that records differing in fields the template ignores share an entry.
type renameKey struct {
	source, device, tag, unit string
	attrs                     [maxCachedAttrs]string
}

// Rename sets the tag to tmpl rendered over the record. Placeholders are
// {source}, {device}, {tag}, {unit} and {attr.NAME}; a missing attribute
// renders as "". Braces cannot appear literally.
//
// Rendering allocates, so results are cached per distinct input: in steady
// state a record costs a map lookup. The cache is per returned Middleware,
// bounded by MaxKeys and not locked, because the engine calls a route's chain
// from one goroutine. Templates with more than four distinct attribute
// placeholders are not cached.
func Rename(tmpl string) (Middleware, error) {
	parts, err := parseTemplate(tmpl)
	if err != nil {
		return nil, err
	}
	switch {
	case len(parts) == 1 && parts[0].field == fieldTag:
		return func(next Next) Next { return next }, nil
	case len(parts) == 1 && parts[0].field == literal:
		tag := parts[0].text
		return func(next Next) Next {
			return func(r *bus.Record) bool {
				r.Tag = tag
				return next(r)
			}
		}, nil
	}
	rn := &renamer{parts: parts, cache: make(map[renameKey]string)}
	for _, p := range parts {
		if p.field == fieldAttr && p.attr >= maxCachedAttrs {
			rn.cache = nil
		}
	}
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			r.Tag = rn.rename(r)
			return next(r)
		}
	}, nil
}

type renamer struct {
	parts []part
	cache map[renameKey]string // nil when the template does not fit a key
}

func (rn *renamer) rename(r *bus.Record) string {
	if rn.cache == nil {
		return rn.render(r)
	}
	k := rn.key(r)
	if s, ok := rn.cache[k]; ok {
		return s
	}
	s := rn.render(r)
	if len(rn.cache) < MaxKeys {
		rn.cache[cloneRenameKey(k)] = s
	}
	return s
}

func (rn *renamer) key(r *bus.Record) renameKey {
	var k renameKey
	for _, p := range rn.parts {
		switch p.field {
		case fieldSource:
			k.source = r.Source
		case fieldDevice:
			k.device = r.Device
		case fieldTag:
			k.tag = r.Tag
		case fieldUnit:
			k.unit = r.Unit
		case fieldAttr:
			k.attrs[p.attr] = r.Attrs[p.text]
		}
	}
	return k
}

func (rn *renamer) render(r *bus.Record) string {
	var b strings.Builder
	for _, p := range rn.parts {
		switch p.field {
		case literal:
			b.WriteString(p.text)
		case fieldSource:
			b.WriteString(r.Source)
		case fieldDevice:
			b.WriteString(r.Device)
		case fieldTag:
			b.WriteString(r.Tag)
		case fieldUnit:
			b.WriteString(r.Unit)
		case fieldAttr:
			b.WriteString(r.Attrs[p.text])
		}
	}
	return b.String()
}

func cloneRenameKey(k renameKey) renameKey {
	c := renameKey{
		source: strings.Clone(k.source),
		device: strings.Clone(k.device),
		tag:    strings.Clone(k.tag),
		unit:   strings.Clone(k.unit),
	}
	for i, a := range k.attrs {
		c.attrs[i] = strings.Clone(a)
	}
	return c
}

func parseTemplate(tmpl string) ([]part, error) {
	fail := func(at int, format string, args ...any) error {
		return &TemplateError{
			Template: tmpl,
			Column:   utf8.RuneCountInString(tmpl[:at]) + 1,
			Reason:   fmt.Sprintf(format, args...),
		}
	}
	if tmpl == "" {
		return nil, fail(0, "empty template")
	}
	var parts []part
	attrs := map[string]int{}
	for i := 0; i < len(tmpl); {
		switch tmpl[i] {
		case '}':
			return nil, fail(i, `unbalanced "}"`)
		case '{':
			end := strings.IndexAny(tmpl[i+1:], "{}")
			if end < 0 || tmpl[i+1+end] == '{' {
				return nil, fail(i, `unbalanced "{"`)
			}
			name := tmpl[i+1 : i+1+end]
			p := part{text: name}
			switch {
			case name == "source":
				p.field = fieldSource
			case name == "device":
				p.field = fieldDevice
			case name == "tag":
				p.field = fieldTag
			case name == "unit":
				p.field = fieldUnit
			case strings.HasPrefix(name, "attr."):
				p.field = fieldAttr
				p.text = strings.TrimPrefix(name, "attr.")
				if p.text == "" {
					return nil, fail(i, "placeholder {attr.} needs an attribute name")
				}
				n, ok := attrs[p.text]
				if !ok {
					n = len(attrs)
					attrs[p.text] = n
				}
				p.attr = n
			default:
				return nil, fail(i, "unknown placeholder {%s}", name)
			}
			parts = append(parts, p)
			i += end + 2
		default:
			end := strings.IndexAny(tmpl[i:], "{}")
			if end < 0 {
				end = len(tmpl) - i
			}
			parts = append(parts, part{field: literal, text: tmpl[i : i+end]})
			i += end
		}
	}
	return parts, nil
}
