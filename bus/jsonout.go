package bus

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentTypeJSONValue is the content type of a payload that is one JSON
// value: an object (shape json) or an array (json-array).
const ContentTypeJSONValue = "application/json"

// JSONShape is how the records of one message are laid out.
type JSONShape uint8

const (
	// JSONLinesShape: one object per line, each line ending in \n
	// (newline-delimited JSON), all records of the message.
	JSONLinesShape JSONShape = iota
	// JSONArrayShape: one array holding an object per record.
	JSONArrayShape
	// JSONObjectShape: one object, one record per message.
	JSONObjectShape
)

var jsonShapeNames = [...]string{"json-lines", "json-array", "json"}

// ParseJSONShape returns the shape a sink's format names, or false for a
// format that is not JSON.
func ParseJSONShape(format string) (JSONShape, bool) {
	i := slices.Index(jsonShapeNames[:], format)
	return JSONShape(max(i, 0)), i >= 0
}

func (s JSONShape) String() string {
	if int(s) < len(jsonShapeNames) {
		return jsonShapeNames[s]
	}
	return fmt.Sprintf("JSONShape(%d)", s)
}

// ContentType is the MIME type of a payload of this shape.
func (s JSONShape) ContentType() string {
	if s == JSONLinesShape {
		return ContentTypeJSON
	}
	return ContentTypeJSONValue
}

// Append appends recs in this shape. JSONObjectShape takes one record;
// given several it writes them as JSON lines rather than lose any.
func (s JSONShape) Append(e *JSONEncoder, dst []byte, recs []Record) []byte {
	switch {
	case s == JSONArrayShape:
		return e.AppendArray(dst, recs)
	case s == JSONObjectShape && len(recs) == 1:
		return e.AppendRecord(dst, &recs[0])
	}
	return e.AppendLines(dst, recs)
}

// JSONOutput is the part of a JSON sink's config that says which fields go
// out and how times are written. Sinks embed it inline.
type JSONOutput struct {
	// Fields lists the record fields to write, by name (JSONFieldNames);
	// empty means all.
	Fields []string `yaml:"fields"`
	// TimeFormat is rfc3339 (the default), unix_ms or unix_us.
	TimeFormat string `yaml:"time_format"`
}

// Check reports what is wrong with o through add (conf.Problems.Add fits).
// json says whether the sink's format is a JSON one: the options mean
// nothing to Avro, which always carries every field.
func (o *JSONOutput) Check(json bool, format string, add func(path, msg string, args ...any)) {
	if !json {
		if o.Fields != nil {
			add("fields", "applies to JSON formats only; format %s carries every field", format)
		}
		if o.TimeFormat != "" {
			add("time_format", "applies to JSON formats only; format %s carries times as nanoseconds since 1970", format)
		}
		return
	}
	if o.Fields != nil && len(o.Fields) == 0 {
		add("fields", "empty: leave fields out to write every field, or list some of %s", strings.Join(JSONFieldNames(), ", "))
	}
	var seen JSONFields
	for i, n := range o.Fields {
		f, ok := ParseJSONField(n)
		switch {
		case !ok:
			add(fmt.Sprintf("fields[%d]", i), "%q is not a record field; fields are %s", n, strings.Join(JSONFieldNames(), ", "))
		case seen&f != 0:
			add(fmt.Sprintf("fields[%d]", i), "%q is listed twice", n)
		}
		seen |= f
	}
	if _, ok := ParseTimeFormat(o.TimeFormat); !ok && o.TimeFormat != "" {
		add("time_format", "%q is not one of %s", o.TimeFormat, strings.Join(TimeFormatNames(), ", "))
	}
}

// Encoder returns an encoder for o, which must have passed Check.
func (o *JSONOutput) Encoder() *JSONEncoder {
	var fields JSONFields
	for _, n := range o.Fields {
		f, _ := ParseJSONField(n)
		fields |= f
	}
	tf, _ := ParseTimeFormat(o.TimeFormat)
	return NewJSONEncoder(fields, tf)
}

// Buffers pools one sink's payload buffers. A buffer made new is sized from
// the last payload put back, so a message of a steady stream is written
// without growing its buffer step by step from nothing (issue 14: growing a
// 194 KB buffer from nil for every message was much of the GC's work).
type Buffers struct {
	pool sync.Pool
	last atomic.Int64
}

// Buffer is a pooled payload buffer.
type Buffer struct {
	B []byte
}

// maxPooled keeps a rare huge payload from being held on to.
const maxPooled = 8 << 20

// Get returns an empty buffer with room for about the last payload.
func (p *Buffers) Get() *Buffer {
	want := int(p.last.Load())
	want += want/8 + 64
	if b, ok := p.pool.Get().(*Buffer); ok {
		if cap(b.B) < want {
			b.B = make([]byte, 0, want)
		}
		b.B = b.B[:0]
		return b
	}
	return &Buffer{B: make([]byte, 0, want)}
}

// Put gives b back once nothing refers to its bytes any more.
func (p *Buffers) Put(b *Buffer) {
	if b == nil {
		return
	}
	p.last.Store(int64(len(b.B)))
	if cap(b.B) > maxPooled {
		return
	}
	p.pool.Put(b)
}
