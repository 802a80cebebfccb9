// Package command holds the write-back command format and rules shared by
// every connector that takes commands over MQTT (the embedded broker, the
// cloud uplink): the payload, its time to live, how a value is read, how
// an outcome is classed as ok, refused or failed, and a cache that answers
// a re-delivered command instead of writing it twice.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// Command is one write-back request: {"id", "value", "ttl"+"ts" or "expires"}
// published on <prefix>/<device>/<tag>.
type Command struct {
	ID      string          `json:"id,omitempty"`
	Value   json.RawMessage `json:"value"`
	TTL     string          `json:"ttl,omitempty"`    // with ts: valid until ts+ttl
	TS      time.Time       `json:"ts,omitzero"`      // when it was issued
	Expires time.Time       `json:"expires,omitzero"` // or an absolute deadline

	// Device and Tag come from the topic; where the topic cannot carry
	// them (Azure IoT Hub's cloud-to-device topic) from the payload.
	Device string `json:"device,omitempty"`
	Tag    string `json:"tag,omitempty"`
	// Reply is the MQTT 5 response topic, when the sender gave one;
	// Correlation its correlation data, echoed back.
	Reply       string    `json:"-"`
	Correlation []byte    `json:"-"`
	Received    time.Time `json:"-"`
}

// Result is what is published back.
type Result struct {
	ID     string          `json:"id,omitempty"`
	Device string          `json:"device"`
	Tag    string          `json:"tag"`
	Value  json.RawMessage `json:"value,omitempty"`
	Status string          `json:"status"` // ok, refused, failed
	Error  string          `json:"error,omitempty"`
}

// Statuses of a Result.
const (
	StatusOK      = "ok"
	StatusRefused = "refused"
	StatusFailed  = "failed"
)

// ErrRefused marks a command that never reached a device: ferry's own
// checks stopped it (see NewResult).
var ErrRefused = errors.New("refused")

// Rules bound how commands run.
type Rules struct {
	// MaxTTL: a command without ttl or expires expires this long after it
	// was received.
	MaxTTL time.Duration
	// Timeout bounds one write to the device.
	Timeout time.Duration
}

// Parse reads a command from the part of its topic after the command
// prefix ("<device>/<tag>") and its payload: a JSON object
// {"id", "value", …}, or a bare JSON value (23.5, true, "text"), which is
// the value of a command without id or ttl. The command is returned even
// with an error (which wraps ErrRefused), so the refusal can be answered
// on the right result topic.
func Parse(rest string, payload []byte, received time.Time) (*Command, error) {
	c := &Command{Received: received}
	var err error
	if bare := bytes.TrimSpace(payload); len(bare) > 0 && bare[0] != '{' && json.Valid(bare) {
		c.Value = json.RawMessage(bare)
	} else {
		err = json.Unmarshal(payload, c)
	}
	// The topic names the tag, whatever the payload says.
	device, tag, ok := strings.Cut(rest, "/")
	c.Device, c.Tag = device, tag
	if !ok || device == "" || tag == "" {
		return c, fmt.Errorf("%w: topic ends in %q, not <device>/<tag>", ErrRefused, rest)
	}
	return c, checkPayload(c, payload, err)
}

// ParsePayload reads a command whose payload names its device and tag:
// {"device", "tag", "value", …}. A bare value cannot name them.
func ParsePayload(payload []byte, received time.Time) (*Command, error) {
	c := &Command{Received: received}
	if bare := bytes.TrimSpace(payload); len(bare) > 0 && bare[0] != '{' && json.Valid(bare) {
		return c, fmt.Errorf("%w: payload is a bare value; here it must be an object {\"device\", \"tag\", \"value\"} naming the tag", ErrRefused)
	}
	err := json.Unmarshal(payload, c)
	if err == nil && (c.Device == "" || c.Tag == "") {
		return c, fmt.Errorf("%w: payload has no \"device\" and \"tag\"", ErrRefused)
	}
	return c, checkPayload(c, payload, err)
}

// checkPayload explains a payload that is not a command in the sender's
// terms (JSON kinds and key names), never in Go's.
func checkPayload(c *Command, payload []byte, err error) error {
	const want = `send {"value": …} or a bare JSON value such as 23.5, true or "text"`
	var te *json.UnmarshalTypeError
	switch {
	case err == nil && len(c.Value) > 0:
		return nil
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("%w: %q is a JSON %s, want %s", ErrRefused, te.Field, te.Value, fieldWant(te.Field))
	case len(bytes.TrimSpace(payload)) == 0:
		return fmt.Errorf("%w: payload is empty: %s", ErrRefused, want)
	case err != nil && !json.Valid(payload):
		return fmt.Errorf("%w: payload is not JSON (a string needs quotes: \"text\"): %s", ErrRefused, want)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(payload, &keys)
	if err != nil {
		// A time that does not parse says so in Go's words; name the key.
		for _, k := range []string{"ts", "expires"} {
			var t time.Time
			if raw, ok := keys[k]; ok && json.Unmarshal(raw, &t) != nil {
				return fmt.Errorf("%w: %q is %s, want %s", ErrRefused, k, raw, fieldWant(k))
			}
		}
		return fmt.Errorf("%w: payload: %v", ErrRefused, err)
	}
	var unknown []string
	for k := range keys {
		switch k {
		case "id", "value", "ttl", "ts", "expires", "device", "tag":
		default:
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("%w: payload has no \"value\" (unknown keys %s): %s", ErrRefused, strings.Join(unknown, ", "), want)
	}
	return fmt.Errorf("%w: payload has no \"value\": %s", ErrRefused, want)
}

// fieldWant says what a command field holds.
func fieldWant(field string) string {
	switch field {
	case "ttl":
		return `a duration string such as "10s"`
	case "ts", "expires":
		return `an RFC 3339 time string such as "2026-11-24T16:00:00Z"`
	}
	return "a string"
}

// Deadline is when c expires.
func (c *Command) Deadline(maxTTL time.Duration) (time.Time, error) {
	switch {
	case !c.Expires.IsZero():
		return c.Expires, nil
	case c.TTL != "":
		ttl, err := time.ParseDuration(c.TTL)
		if err != nil || ttl <= 0 {
			return time.Time{}, fmt.Errorf("%w: ttl %q is not a positive duration", ErrRefused, c.TTL)
		}
		issued := c.TS
		if issued.IsZero() {
			issued = c.Received
		}
		return issued.Add(ttl), nil
	}
	return c.Received.Add(maxTTL), nil
}

// Execute checks c's deadline and value and hands it to write (the
// pipeline's WriteTag), bounded by r.Timeout.
func (c *Command) Execute(ctx context.Context, r Rules, write func(ctx context.Context, device, tag string, v bus.Value) error) error {
	deadline, err := c.Deadline(r.MaxTTL)
	if err != nil {
		return err
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("%w: expired at %s", ErrRefused, deadline.UTC().Format(time.RFC3339Nano))
	}
	v, err := Value(c.Value)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	wctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	return write(wctx, c.Device, c.Tag, v)
}

// Value reads a JSON scalar as a record value: integers stay integers.
func Value(raw json.RawMessage) (bus.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return bus.Null(), err
	}
	switch t := v.(type) {
	case bool:
		return bus.Bool(t), nil
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return bus.Long(i), nil
		}
		f, err := t.Float64()
		return bus.Double(f), err
	case string:
		return bus.String(t), nil
	}
	return bus.Null(), errors.New("value must be a number, boolean or string")
}

// NewResult classes err by one rule for every connector:
//   - ok: the device confirmed the write;
//   - refused: ferry's own checks stopped the command before any request
//     left for the device (expired, malformed payload, unknown or
//     read-only tag, a value the writer's type or range check rejects,
//     not allowed, too many waiting). Sent again unchanged it is refused
//     again. A writer marks its own refusals by wrapping ErrRefused;
//     connectors.ErrUnknownTag and connectors.ErrNotWritable count too;
//   - failed: a request was sent or tried, and the device said no (a
//     Modbus exception, an OPC UA Bad status, BadNotWritable included),
//     did not answer, or the link was down.
func NewResult(c *Command, err error) Result {
	r := Result{ID: c.ID, Device: c.Device, Tag: c.Tag, Value: c.Value, Status: StatusOK}
	switch {
	case err == nil:
	case errors.Is(err, ErrRefused), errors.Is(err, connectors.ErrUnknownTag), errors.Is(err, connectors.ErrNotWritable):
		r.Status, r.Error = StatusRefused, err.Error()
	default:
		r.Status, r.Error = StatusFailed, err.Error()
	}
	return r
}

// Cache remembers the outcome of the last commands with an id, so a
// command delivered again (MQTT QoS 1 after a lost PUBACK, a sender's
// retry) is answered with the first outcome and not written twice.
// Commands without an id cannot be told apart and are not cached.
type Cache struct {
	mu    sync.Mutex
	size  int
	order []string // keys, oldest first
	m     map[string]*entry
}

type entry struct {
	done bool
	r    Result
}

// NewCache keeps the last n outcomes (64 when n <= 0).
func NewCache(n int) *Cache {
	if n <= 0 {
		n = 64
	}
	return &Cache{size: n, m: make(map[string]*entry, n)}
}

func key(c *Command) string { return c.Device + "/" + c.Tag + "\x00" + c.ID }

// Begin claims c for execution. It returns first=true when c is new (or
// has no id); otherwise c was seen before, and r is its outcome when done
// is true, or it is still running (done=false) and will be answered then.
func (k *Cache) Begin(c *Command) (first bool, r Result, done bool) {
	if c.ID == "" {
		return true, Result{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kk := key(c)
	if e, ok := k.m[kk]; ok {
		return false, e.r, e.done
	}
	if len(k.order) >= k.size {
		delete(k.m, k.order[0])
		k.order = k.order[1:]
	}
	k.order = append(k.order, kk)
	k.m[kk] = &entry{}
	return true, Result{}, false
}

// Done records c's outcome.
func (k *Cache) Done(c *Command, r Result) {
	if c.ID == "" {
		return
	}
	k.mu.Lock()
	if e, ok := k.m[key(c)]; ok {
		e.done, e.r = true, r
	}
	k.mu.Unlock()
}
