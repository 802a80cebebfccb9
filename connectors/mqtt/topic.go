package mqtt

import (
	"fmt"
	"strings"

	"github.com/ferry-gateway/ferry/bus"
)

// topic is a compiled topic template: literal parts and placeholders.
type topic struct {
	parts     []part
	perRecord bool // depends on the record, so batches are split by topic
}

type part struct {
	lit string
	ph  string // site, module, source, device, tag; empty for a literal
}

var placeholders = []string{"site", "module", "source", "device", "tag"}

func parseTopic(s string) (topic, error) {
	var t topic
	if s == "" {
		return t, fmt.Errorf("missing topic")
	}
	if strings.ContainsAny(s, "+#") {
		return t, fmt.Errorf("topic %q holds a wildcard (+ or #); a publish topic cannot", s)
	}
	for s != "" {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			t.parts = append(t.parts, part{lit: s})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{lit: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return t, fmt.Errorf("unclosed { in topic template")
		}
		name := s[open+1 : open+end]
		if !contains(placeholders, name) {
			return t, fmt.Errorf("unknown placeholder {%s}; valid placeholders are {%s}", name, strings.Join(placeholders, "}, {"))
		}
		t.parts = append(t.parts, part{ph: name})
		if name == "source" || name == "device" || name == "tag" {
			t.perRecord = true
		}
		s = s[open+end+1:]
	}
	return t, nil
}

// render appends the topic for r to dst.
func (t topic) render(dst []byte, site, module string, r *bus.Record) []byte {
	for _, p := range t.parts {
		switch p.ph {
		case "":
			dst = append(dst, p.lit...)
		case "site":
			dst = append(dst, site...)
		case "module":
			dst = append(dst, module...)
		case "source":
			dst = append(dst, r.Source...)
		case "device":
			dst = append(dst, r.Device...)
		case "tag":
			dst = append(dst, r.Tag...)
		}
	}
	return dst
}
