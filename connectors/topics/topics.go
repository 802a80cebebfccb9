// Package topics holds MQTT topic templates over record fields and topic
// filter checks, shared by the MQTT uplink and the embedded broker.
package topics

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-gateway/ferry/bus"
)

// Template is a compiled topic template: literal parts and placeholders.
type Template struct {
	parts []part
	// PerRecord: the topic depends on the record, so batches are split by
	// topic.
	PerRecord bool
}

type part struct {
	lit string
	ph  string // site, module, source, device, tag; empty for a literal
}

var placeholders = []string{"site", "module", "source", "device", "tag"}

// Parse compiles a template with {site}, {module}, {source}, {device} and
// {tag}.
func Parse(s string) (Template, error) {
	var t Template
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
		if !slices.Contains(placeholders, name) {
			return t, fmt.Errorf("unknown placeholder {%s}; valid placeholders are {%s}", name, strings.Join(placeholders, "}, {"))
		}
		t.parts = append(t.parts, part{ph: name})
		if name == "source" || name == "device" || name == "tag" {
			t.PerRecord = true
		}
		s = s[open+end+1:]
	}
	return t, nil
}

// Render appends the topic for r to dst (r may be nil when the template is
// not per record).
func (t Template) Render(dst []byte, site, module string, r *bus.Record) []byte {
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

// ValidFilter checks an MQTT topic filter: + and # only as whole levels, #
// only last.
func ValidFilter(f string) error {
	if f == "" {
		return fmt.Errorf("missing topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return fmt.Errorf("topic filter %q: + and # must stand alone in a level", f)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		}
	}
	return nil
}

// Match reports whether topic matches an MQTT filter.
func Match(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

// Within reports whether every topic the filter req can match is also
// matched by allowed: a subscription to "#" is not within "plant/#".
func Within(req, allowed string) bool {
	r, a := strings.Split(req, "/"), strings.Split(allowed, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(r) {
			return false
		}
		switch {
		case r[i] == "#":
			return false
		case al == "+":
			continue
		case r[i] == "+" || r[i] != al:
			return false
		}
	}
	return len(r) == len(a)
}
