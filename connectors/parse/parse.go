package parse

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// Parser reads payloads with one Config. A Parser is not safe for
// concurrent use (a CSV stream keeps its header).
type Parser struct {
	c      Config
	tag    template
	device template
	re     *regexp.Regexp
	fields map[string]string // JSON field paths by record field
	cols   []string          // CSV columns: configured, or from the header
	// doubles holds the tags that carried a fraction (value_type: auto):
	// their whole numbers are doubles from then on.
	doubles map[string]bool
}

// maxPinned bounds the tags value_type: auto remembers.
const maxPinned = 10000

// New compiles a validated Config.
func New(c Config) (*Parser, error) {
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Parser{c: c, cols: c.Columns}
	p.tag, _ = parseTemplate(c.Tag)
	p.device, _ = parseTemplate(c.Device)
	if c.Format == "regex" {
		p.re = regexp.MustCompile(c.Pattern)
	}
	f := c.Fields
	p.fields = map[string]string{"tag": f.Tag, "value": f.Value, "time": f.Time, "quality": f.Quality, "device": f.Device, "unit": f.Unit}
	return p, nil
}

// Parse appends the records of one payload (an MQTT message, a request
// body: possibly several lines) to b. topic is the MQTT topic or the source's
// name, for templates. A CSV payload with header: true starts with its
// header. On error, b is left as it was.
func (p *Parser) Parse(payload []byte, topic string, b *bus.Batch) error {
	n := len(b.Records)
	var err error
	switch p.c.Format {
	case "json":
		err = p.parseJSON(payload, topic, b)
	case "raw":
		err = p.emit(b, topic, p.tag.render(topic, ""), p.typed(string(bytes.TrimSpace(payload))), nil)
	case "csv":
		if p.c.Header {
			p.cols = nil
		}
		err = p.parseCSV(payload, topic, b)
	default:
		for _, line := range bytes.Split(payload, []byte{'\n'}) {
			if err = p.ParseLine(line, topic, b); err != nil {
				break
			}
		}
	}
	if err != nil {
		clear(b.Records[n:])
		b.Records = b.Records[:n]
		return fmt.Errorf("%w: %w", ErrParse, err)
	}
	return nil
}

// ParseLine appends the records of one line of a stream. For CSV with a
// header, the first line of the stream is the header.
func (p *Parser) ParseLine(line []byte, topic string, b *bus.Batch) error {
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	n := len(b.Records)
	var err error
	switch p.c.Format {
	case "csv":
		err = p.parseCSV(line, topic, b)
	case "kv":
		err = p.parseKV(line, topic, b)
	case "regex":
		err = p.parseRegex(line, topic, b)
	case "raw":
		err = p.emit(b, topic, p.tag.render(topic, ""), p.typed(string(bytes.TrimSpace(line))), nil)
	default:
		err = p.parseJSON(line, topic, b)
	}
	if err != nil {
		clear(b.Records[n:])
		b.Records = b.Records[:n]
		return fmt.Errorf("%w: %w", ErrParse, err)
	}
	return nil
}

// fieldSet holds the record fields found in one row/object.
type fieldSet struct {
	time, quality, device, unit string
	hasTime                     bool
	timeNum                     json.Number
}

func (p *Parser) emit(b *bus.Batch, topic, tag string, v bus.Value, f *fieldSet) error {
	if tag == "" {
		return fmt.Errorf("no tag (map a tag field or give a tag template)")
	}
	if p.c.ValueType == "auto" {
		v = p.pin(tag, v)
	}
	r := bus.Record{Tag: tag, Value: v, Unit: p.c.Unit, Device: p.device.render(topic, tag)}
	if f != nil {
		if f.device != "" {
			r.Device = f.device
		}
		if f.unit != "" {
			r.Unit = f.unit
		}
		if f.quality != "" {
			q, err := bus.ParseQuality(strings.ToUpper(f.quality))
			if err != nil {
				return err
			}
			r.Quality = q
		}
		if f.hasTime {
			ts, err := p.parseTime(f.time, f.timeNum)
			if err != nil {
				return err
			}
			r.SourceTime = ts
		}
	}
	b.Records = append(b.Records, r)
	return nil
}

// pin keeps a tag's numbers one type under value_type: auto: once it
// carried a fraction, its whole numbers are doubles too (22 after 21.5 is
// 22.0), so a consumer never sees its type flip back.
func (p *Parser) pin(tag string, v bus.Value) bus.Value {
	switch v.Kind {
	case bus.KindDouble:
		if p.doubles == nil {
			p.doubles = map[string]bool{}
		}
		if len(p.doubles) < maxPinned {
			p.doubles[tag] = true
		}
	case bus.KindLong:
		if p.doubles[tag] {
			return bus.Double(float64(v.Long()))
		}
	}
	return v
}

// epoch reads a number of seconds, milliseconds, microseconds or
// nanoseconds since 1970 by its magnitude: below 1e11 seconds (up to the
// year 5138), below 1e14 milliseconds (from 1973), below 1e17
// microseconds, nanoseconds above.
func epoch(s string) (int64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	a := math.Abs(f)
	switch {
	case a < 1e11:
		// Whole and fraction apart: a float64 of nanoseconds since 1970
		// has no room for the last digits.
		whole, frac, _ := strings.Cut(s, ".")
		if w, err := strconv.ParseInt(whole, 10, 64); err == nil && len(frac) <= 9 && !strings.ContainsAny(s, "eE") {
			ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			if strings.HasPrefix(whole, "-") {
				ns = -ns
			}
			return w*1e9 + ns, true
		}
		return int64(f * 1e9), true
	case a < 1e14:
		return int64(f * 1e6), true
	case a < 1e17:
		return int64(f * 1e3), true
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	return int64(f), true
}

func (p *Parser) parseTime(s string, num json.Number) (int64, error) {
	if num != "" {
		s = string(num)
	}
	if p.c.TimeFormat == "rfc3339" {
		// The default reads RFC 3339 text, and numbers (a JSON number or a
		// numeric string) as epoch time by magnitude.
		if ns, ok := epoch(s); ok {
			return ns, nil
		}
	}
	unit := map[string]float64{"unix": 1e9, "unix_ms": 1e6, "unix_us": 1e3, "unix_ns": 1}[p.c.TimeFormat]
	if unit != 0 {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i * int64(unit), nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, fmt.Errorf("time %q is not a %s number", s, p.c.TimeFormat)
		}
		return int64(f * unit), nil
	}
	layout := p.c.TimeFormat
	if layout == "rfc3339" {
		layout = time.RFC3339Nano
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return 0, fmt.Errorf("time %q does not match %s", s, p.c.TimeFormat)
	}
	return t.UnixNano(), nil
}

// typed turns text into a value: a whole number is a long, another number a
// double, true/false a bool, anything else a string — unless value_type
// forces one.
func (p *Parser) typed(s string) bus.Value {
	v, _ := p.typedErr(s)
	return v
}

func (p *Parser) typedErr(s string) (bus.Value, error) {
	switch p.c.ValueType {
	case "string":
		return bus.String(s), nil
	case "double":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bus.Null(), fmt.Errorf("value %q is not a number", s)
		}
		return bus.Double(f), nil
	case "long":
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bus.Null(), fmt.Errorf("value %q is not a whole number", s)
		}
		return bus.Long(i), nil
	case "bool":
		v, err := strconv.ParseBool(s)
		if err != nil {
			return bus.Null(), fmt.Errorf("value %q is not true or false", s)
		}
		return bus.Bool(v), nil
	case "number":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return bus.Double(f), nil
		}
		if v, err := strconv.ParseBool(s); err == nil && len(s) > 1 {
			return bus.Bool(v), nil
		}
		return bus.String(s), nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return bus.Long(i), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return bus.Double(f), nil
	}
	if v, err := strconv.ParseBool(s); err == nil && len(s) > 1 {
		return bus.Bool(v), nil
	}
	return bus.String(s), nil
}

// --- JSON ---

func (p *Parser) parseJSON(payload []byte, topic string, b *bus.Batch) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		switch t := v.(type) {
		case []any:
			for i, o := range t {
				obj, ok := o.(map[string]any)
				if !ok {
					return fmt.Errorf("json: element %d is not an object", i)
				}
				if err := p.jsonObject(obj, topic, b); err != nil {
					return fmt.Errorf("element %d: %w", i, err)
				}
			}
		case map[string]any:
			if err := p.jsonObject(t, topic, b); err != nil {
				return err
			}
		default:
			return fmt.Errorf("json: expected an object or an array of objects")
		}
	}
}

func (p *Parser) jsonObject(obj map[string]any, topic string, b *bus.Batch) error {
	var f fieldSet
	str := func(field string) string {
		v, ok := lookup(obj, p.fields[field])
		if !ok || v == nil {
			return ""
		}
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprint(v)
	}
	f.device, f.unit, f.quality = str("device"), str("unit"), str("quality")
	if tv, ok := lookup(obj, p.fields["time"]); ok && tv != nil {
		f.hasTime = true
		switch t := tv.(type) {
		case json.Number:
			f.timeNum = t
		case string:
			f.time = t
		default:
			return fmt.Errorf("time field %s is neither a string nor a number", p.fields["time"])
		}
	}
	if !p.c.Wide {
		raw, ok := lookup(obj, p.fields["value"])
		if !ok {
			return fmt.Errorf("no value at %s", p.fields["value"])
		}
		v, err := p.jsonValue(raw)
		if err != nil {
			return err
		}
		tag := str("tag")
		if tag == "" {
			tag = p.tag.render(topic, "")
		}
		return p.emit(b, topic, tag, v, &f)
	}
	values := obj
	if p.c.Values != "" {
		m, ok := lookup(obj, p.c.Values)
		if values, ok = m.(map[string]any); !ok {
			return fmt.Errorf("no object at %s", p.c.Values)
		}
	}
	skip := map[string]bool{}
	if p.c.Values == "" {
		for _, k := range []string{"time", "device", "unit", "quality"} {
			skip[strings.TrimPrefix(p.fields[k], "/")] = true
		}
	}
	for _, k := range sortedKeys(values) {
		if skip[k] {
			continue
		}
		v, err := p.jsonValue(values[k])
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		tag := k
		if len(p.tag) > 0 {
			tag = p.tag.render(topic, k)
		}
		if err := p.emit(b, topic, tag, v, &f); err != nil {
			return err
		}
	}
	return nil
}

func (p *Parser) jsonValue(raw any) (bus.Value, error) {
	switch v := raw.(type) {
	case nil:
		return bus.Null(), nil
	case bool:
		if p.c.ValueType != "auto" && p.c.ValueType != "bool" && p.c.ValueType != "number" {
			return p.typedErr(strconv.FormatBool(v))
		}
		return bus.Bool(v), nil
	case json.Number:
		return p.typedErr(string(v))
	case string:
		if p.c.ValueType == "auto" || p.c.ValueType == "number" {
			return bus.String(v), nil
		}
		return p.typedErr(v)
	default:
		js, _ := json.Marshal(v)
		return bus.String(string(js)), nil
	}
}

// lookup follows a dotted path ("a.b", "a[0].c") or a JSON pointer ("/a/b").
func lookup(v any, path string) (any, bool) {
	if path == "" {
		return nil, false
	}
	var segs []string
	if strings.HasPrefix(path, "/") {
		for _, s := range strings.Split(path[1:], "/") {
			segs = append(segs, strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~"))
		}
	} else {
		for _, s := range strings.Split(path, ".") {
			for {
				i := strings.IndexByte(s, '[')
				if i < 0 {
					segs = append(segs, s)
					break
				}
				if i > 0 {
					segs = append(segs, s[:i])
				}
				j := strings.IndexByte(s[i:], ']')
				if j < 0 {
					return nil, false
				}
				segs = append(segs, s[i+1:i+j])
				s = s[i+j+1:]
				if s == "" {
					break
				}
			}
		}
	}
	for _, s := range segs {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[s]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// --- CSV, key=value, regex ---

func (p *Parser) parseCSV(payload []byte, topic string, b *bus.Batch) error {
	r := csv.NewReader(bytes.NewReader(payload))
	r.Comma = rune(p.c.Delimiter[0])
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	for {
		row, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("csv: %w", err)
		}
		if p.cols == nil {
			p.cols = row
			continue
		}
		if len(row) != len(p.cols) {
			return fmt.Errorf("csv: %d columns where %d are mapped (%s)", len(row), len(p.cols), strings.Join(p.cols, ","))
		}
		names := make([]string, len(row))
		copy(names, p.cols)
		if err := p.row(names, row, topic, b); err != nil {
			return err
		}
	}
}

// row emits the records of one row of named cells (CSV, key=value, regex):
// the cells named tag and value make one record, any other name is a tag.
func (p *Parser) row(names, cells []string, topic string, b *bus.Batch) error {
	var f fieldSet
	var tag, value string
	hasValue := false
	for i, n := range names {
		switch n {
		case "tag":
			tag = cells[i]
		case "value":
			value, hasValue = cells[i], true
		case "time":
			f.time, f.hasTime = cells[i], true
		case "device":
			f.device = cells[i]
		case "unit":
			f.unit = cells[i]
		case "quality":
			f.quality = cells[i]
		}
	}
	if hasValue {
		if tag == "" {
			tag = p.tag.render(topic, "")
		}
		v, err := p.typedErr(value)
		if err != nil {
			return err
		}
		return p.emit(b, topic, tag, v, &f)
	}
	any := false
	for i, n := range names {
		switch n {
		case "tag", "time", "device", "unit", "quality", "-", "":
			continue
		}
		v, err := p.typedErr(cells[i])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		t := n
		if len(p.tag) > 0 {
			t = p.tag.render(topic, n)
		}
		if err := p.emit(b, topic, t, v, &f); err != nil {
			return err
		}
		any = true
	}
	if !any {
		return fmt.Errorf("no value in the row")
	}
	return nil
}

// parseKV reads key=value pairs separated by spaces, tabs, commas or
// semicolons. A value in double quotes may hold any of them and escaped
// quotes (msg="disk \"A\" full; retry"); the quotes are not kept.
func (p *Parser) parseKV(line []byte, topic string, b *bus.Batch) error {
	var names, cells []string
	sep := func(c byte) bool { return c == ' ' || c == '\t' || c == ',' || c == ';' }
	s := string(line)
	for i := 0; i < len(s); {
		if sep(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && !sep(s[i]) && s[i] != '=' {
			i++
		}
		k := s[start:i]
		if i >= len(s) || s[i] != '=' || k == "" {
			for i < len(s) && !sep(s[i]) {
				i++
			}
			return fmt.Errorf("kv: %q is not key=value", s[start:i])
		}
		i++ // the =
		var v string
		if i < len(s) && s[i] == '"' {
			var sb strings.Builder
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					sb.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '"' {
					closed = true
					break
				}
				sb.WriteByte(c)
			}
			if !closed {
				return fmt.Errorf("kv: %s: unclosed quote", k)
			}
			if i < len(s) && !sep(s[i]) {
				return fmt.Errorf("kv: %s: text after the closing quote", k)
			}
			v = sb.String()
		} else {
			vs := i
			for i < len(s) && !sep(s[i]) {
				i++
			}
			v = s[vs:i]
		}
		names = append(names, k)
		cells = append(cells, v)
	}
	if len(names) == 0 {
		return fmt.Errorf("kv: no key=value pairs")
	}
	return p.row(names, cells, topic, b)
}

func (p *Parser) parseRegex(line []byte, topic string, b *bus.Batch) error {
	m := p.re.FindSubmatch(line)
	if m == nil {
		return fmt.Errorf("regex: line does not match %s", p.c.Pattern)
	}
	var names, cells []string
	for i, n := range p.re.SubexpNames() {
		if i == 0 || n == "" {
			continue
		}
		names = append(names, n)
		cells = append(cells, string(m[i]))
	}
	return p.row(names, cells, topic, b)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
