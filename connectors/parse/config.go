// Package parse turns brownfield payloads — JSON, CSV, key=value lines,
// regular expressions with named groups, raw values — into records. The MQTT
// source, the local broker, the line source and the HTTP webhook share it,
// so a mapping written for one reads the same in the others.
package parse

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config says how to read payloads. It is embedded in each connector's
// config under `parse:`.
type Config struct {
	// Format: json, csv, kv, regex or raw.
	Format string `yaml:"format"`
	// Fields maps record fields to where they are in a JSON object (a dotted
	// path "a.b", "a[0]", or a JSON pointer "/a/b"). Unset fields have
	// defaults: tag, value, time ← "ts", quality, device, unit.
	Fields Fields `yaml:"fields"`
	// Wide: every other key of a JSON object (or of Values, when set) is a
	// tag and its value the value — {"temp": 21.5, "rpm": 1450}.
	Wide   bool   `yaml:"wide"`
	Values string `yaml:"values"` // path of the object holding the values, in wide mode
	// Columns names CSV columns in order: tag, value, time, device,
	// quality, unit, "-" to skip, any other name a tag whose value the
	// column holds. Header: the first line names the columns instead.
	Columns   []string `yaml:"columns"`
	Header    bool     `yaml:"header"`
	Delimiter string   `yaml:"delimiter"`
	// Pattern is the regular expression of the regex format; its named
	// groups are fields (tag, value, time, …) or, any other name, tags.
	Pattern string `yaml:"pattern"`
	// Tag is a template for the tag when the payload carries none (raw
	// payloads, or JSON without a tag field): {topic}, {topic.N} (the Nth
	// level, from 0), {key}.
	Tag string `yaml:"tag"`
	// Device is the device when the payload carries none; a template too.
	Device string `yaml:"device"`
	Unit   string `yaml:"unit"`
	// TimeFormat: rfc3339 (default; a number is read as epoch seconds,
	// milliseconds, microseconds or nanoseconds by its magnitude), unix,
	// unix_ms, unix_us, unix_ns, or a Go time layout.
	TimeFormat string `yaml:"time_format"`
	// ValueType forces the value's type: auto (default: a whole number is
	// a long until its tag first carries a fraction, a double from then
	// on), number (every number a double), double, long, bool, string.
	ValueType string `yaml:"value_type"`
}

// Fields are JSON paths of record fields.
type Fields struct {
	Tag     string `yaml:"tag"`
	Value   string `yaml:"value"`
	Time    string `yaml:"time"`
	Quality string `yaml:"quality"`
	Device  string `yaml:"device"`
	Unit    string `yaml:"unit"`
}

// Formats and the other enumerations, for messages.
var (
	Formats     = []string{"json", "csv", "kv", "regex", "raw"}
	ValueTypes  = []string{"auto", "number", "double", "long", "bool", "string"}
	TimeFormats = []string{"rfc3339", "unix", "unix_ms", "unix_us", "unix_ns"}
)

// ErrParse marks a payload that does not fit the mapping; it is counted in
// ferry_parse_errors_total and the payload is skipped.
var ErrParse = errors.New("parse error")

// SetDefaults fills the field names and formats.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = "json"
	}
	f := &c.Fields
	for _, d := range []struct {
		p   *string
		def string
	}{{&f.Tag, "tag"}, {&f.Value, "value"}, {&f.Time, "ts"}, {&f.Quality, "quality"}, {&f.Device, "device"}, {&f.Unit, "unit"}} {
		if *d.p == "" {
			*d.p = d.def
		}
	}
	if c.TimeFormat == "" {
		c.TimeFormat = "rfc3339"
	}
	if c.ValueType == "" {
		c.ValueType = "auto"
	}
	if c.Delimiter == "" {
		c.Delimiter = ","
	}
}

// Validate checks the mapping; paths are relative to the parse: section.
func (c *Config) Validate() error {
	var p conf.Problems
	if !slices.Contains(Formats, c.Format) {
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	}
	if !slices.Contains(ValueTypes, c.ValueType) {
		p.Add("value_type", "%q is not one of %s", c.ValueType, strings.Join(ValueTypes, ", "))
	}
	if !slices.Contains(TimeFormats, c.TimeFormat) && !strings.ContainsAny(c.TimeFormat, "0123456789") {
		p.Add("time_format", "%q is not one of %s or a Go layout such as 2006-01-02 15:04:05", c.TimeFormat, strings.Join(TimeFormats, ", "))
	}
	switch c.Format {
	case "csv":
		if len(c.Delimiter) != 1 {
			p.Add("delimiter", "must be one character, got %q", c.Delimiter)
		}
		if len(c.Columns) == 0 && !c.Header {
			p.Add("columns", "csv needs columns (e.g. [time, tag, value]) or header: true")
		}
	case "regex":
		re, err := regexp.Compile(c.Pattern)
		switch {
		case c.Pattern == "":
			p.Add("pattern", "regex needs a pattern with named groups such as (?P<tag>\\w+)=(?P<value>\\S+)")
		case err != nil:
			p.Add("pattern", "does not compile: %v", err)
		case len(re.SubexpNames()) <= 1:
			p.Add("pattern", "has no named groups; name them (?P<tag>…), (?P<value>…), or after the tag they hold")
		}
	case "raw":
		if c.Tag == "" {
			p.Add("tag", "raw payloads carry no tag; give a template such as {topic}")
		}
	}
	for _, t := range []struct{ field, tmpl string }{{"tag", c.Tag}, {"device", c.Device}} {
		if _, err := parseTemplate(t.tmpl); err != nil {
			p.Add(t.field, "%v", err)
		}
	}
	return p.Err()
}

// template is a compiled {topic}, {topic.N}, {key} template.
type template []tpart

type tpart struct {
	lit   string
	ph    string
	level int
}

func parseTemplate(s string) (template, error) {
	var t template
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			t = append(t, tpart{lit: s})
			break
		}
		if i > 0 {
			t = append(t, tpart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed { in template %q", s)
		}
		name := s[i+1 : i+j]
		switch {
		case name == "topic" || name == "key":
			t = append(t, tpart{ph: name})
		case strings.HasPrefix(name, "topic."):
			var n int
			if _, err := fmt.Sscanf(name, "topic.%d", &n); err != nil || n < 0 {
				return nil, fmt.Errorf("{%s}: expected {topic.N} with N a level from 0", name)
			}
			t = append(t, tpart{ph: "topic", level: n + 1})
		default:
			return nil, fmt.Errorf("unknown placeholder {%s}; valid are {topic}, {topic.N}, {key}", name)
		}
		s = s[i+j+1:]
	}
	return t, nil
}

func (t template) render(topic, key string) string {
	if len(t) == 1 && t[0].ph == "" {
		return t[0].lit
	}
	var b strings.Builder
	for _, p := range t {
		switch p.ph {
		case "":
			b.WriteString(p.lit)
		case "key":
			b.WriteString(key)
		case "topic":
			if p.level == 0 {
				b.WriteString(topic)
				continue
			}
			levels := strings.Split(topic, "/")
			if p.level-1 < len(levels) {
				b.WriteString(levels[p.level-1])
			}
		}
	}
	return b.String()
}

// ErrorsMetric is ferry_parse_errors_total, shared by every connector that
// parses payloads; register it with connectors.Collector.
func ErrorsMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_parse_errors_total",
		Help: "Payloads or lines that did not fit their parse mapping and were skipped.",
	}, []string{"module"})
}
