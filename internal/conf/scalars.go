package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// nodeError reports a problem at a node while letting the yaml decoder go
// on: a *yaml.TypeError is collected, any other error would stop decoding at
// the first problem. decode parses the "line L:C:" prefix back out.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{
		fmt.Sprintf("line %d:%d: %s", n.Line, n.Column, fmt.Sprintf(format, args...)),
	}}
}

// Duration is a non-negative Go duration written as a string ("250ms",
// "1m30s"). A bare number is refused because its unit would be a guess.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a duration such as 500ms, 10s or 1h")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, "%q is not a duration; expected a number with a unit (ns, us, ms, s, m, h) such as 500ms or 1m30s", n.Value)
	}
	if v < 0 {
		return nodeError(n, "duration %s is negative; expected zero or more", n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Size is a byte count written with an optional unit: 512, 64KiB, 10MB, 1GiB.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses the forms Size accepts.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) > math.MaxInt64/2 {
		hint := ""
		if mult == 1 {
			// "256mb", "1gib": the unit in the wrong case. Both spellings of
			// a unit are offered, since the case does not say which was meant.
			for _, u := range sizeUnits {
				if num, ok := cutSuffixFold(s, u.suffix); ok && u.suffix != "B" && len(u.suffix) == 2 {
					hint = fmt.Sprintf("; units are written as shown: did you mean %s%s (powers of 1000) or %s%ciB (powers of 1024)?", num, u.suffix, num, u.suffix[0])
					break
				} else if ok && len(u.suffix) == 3 {
					hint = fmt.Sprintf("; units are written as shown: did you mean %s%s?", num, u.suffix)
					break
				}
			}
		}
		return 0, fmt.Errorf("not a size; expected a non-negative number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB) such as 64MiB%s", hint)
	}
	return Size(f * float64(mult)), nil
}

// cutSuffixFold cuts suffix from s ignoring case, when what is left is a
// number.
func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) <= len(suffix) || !strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return "", false
	}
	num := strings.TrimSpace(s[:len(s)-len(suffix)])
	if _, err := strconv.ParseFloat(num, 64); err != nil {
		return "", false
	}
	return num, true
}

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a size such as 64MiB")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return nodeError(n, "%q is %v", n.Value, err)
	}
	*s = v
	return nil
}

// String renders s in the unit it was most likely written in: a binary
// unit when it is a whole number of them, else a decimal one, so that a
// quota written as 256MB reads back as 256MB and not as 250000KiB. Below a
// megabyte, bytes read plainly enough.
func (s Size) String() string {
	switch {
	case s >= 1<<30 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s>>30), 10) + "GiB"
	case s >= 1<<20 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s>>20), 10) + "MiB"
	case s >= 1e9 && s%1e9 == 0:
		return strconv.FormatInt(int64(s/1e9), 10) + "GB"
	case s >= 1e6 && s%1e6 == 0:
		return strconv.FormatInt(int64(s/1e6), 10) + "MB"
	case s >= 1<<10 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// StringList accepts either one string or a list of strings, because
// "to: cloud" reads better than "to: [cloud]" for the common case.
type StringList []string

func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*l = nil
			return nil
		}
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nodeError(c, "expected a string")
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return nodeError(n, "expected a string or a list of strings")
}
