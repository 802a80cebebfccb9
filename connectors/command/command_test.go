package command

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

func TestParseExecuteAndClass(t *testing.T) {
	now := time.Now()
	rules := Rules{MaxTTL: time.Minute, Timeout: time.Second}
	var wrote []bus.Value
	write := func(_ context.Context, device, tag string, v bus.Value) error {
		switch tag {
		case "serial":
			return connectors.ErrNotWritable
		case "nosuch":
			return connectors.ErrUnknownTag
		case "broken":
			return errors.New("device busy")
		}
		wrote = append(wrote, v)
		return nil
	}
	for _, c := range []struct {
		rest, payload string
		received      time.Time
		status, why   string
	}{
		{"press-1/setpoint", `{"id":"a","value":230}`, now, StatusOK, ""},
		{"press-1/setpoint", `{"value":2.5}`, now, StatusOK, ""},
		{"press-1/setpoint", `{"value":true}`, now, StatusOK, ""},
		{"press-1/setpoint", `{"value":"on"}`, now, StatusOK, ""},
		{"press-1/setpoint", `{"value":[1]}`, now, StatusRefused, "number, boolean or string"},
		{"press-1/serial", `{"value":1}`, now, StatusRefused, "not writable"},
		{"press-1/nosuch", `{"value":1}`, now, StatusRefused, "unknown tag"},
		{"press-1/broken", `{"value":1}`, now, StatusFailed, "device busy"},
		{"press-1", `{"value":1}`, now, StatusRefused, "<device>/<tag>"},
		{"press-1/setpoint", `{"valu":1}`, now, StatusRefused, `no "value" (unknown keys "valu")`},
		{"press-1/setpoint", `{}`, now, StatusRefused, `no "value"`},
		{"press-1/setpoint", `not json`, now, StatusRefused, "not JSON (a string needs quotes"},
		{"press-1/setpoint", ``, now, StatusRefused, "empty"},
		// A bare JSON value is the value (issue 15): the same kinds as in
		// an object, and no Go type name in any refusal.
		{"press-1/setpoint", ` 23.5 `, now, StatusOK, ""},
		{"press-1/setpoint", `true`, now, StatusOK, ""},
		{"press-1/setpoint", `"text"`, now, StatusOK, ""},
		{"press-1/setpoint", `-7`, now, StatusOK, ""},
		{"press-1/setpoint", `null`, now, StatusRefused, "number, boolean or string"},
		{"press-1/setpoint", `[1,2]`, now, StatusRefused, "number, boolean or string"},
		{"press-1/setpoint", `{"value":null}`, now, StatusRefused, "number, boolean or string"},
		{"press-1/setpoint", `{"value":1,"ttl":10}`, now, StatusRefused, `"ttl" is a JSON number, want a duration string such as "10s"`},
		{"press-1/setpoint", `{"value":1,"id":7}`, now, StatusRefused, `"id" is a JSON number, want a string`},
		{"press-1/setpoint", `{"value":1,"ts":5}`, now, StatusRefused, `"ts" is 5, want an RFC 3339 time`},
		{"press-1/setpoint", `{"value":1,"expires":"soon"}`, now, StatusRefused, `"expires" is "soon", want an RFC 3339 time`},
		{"press-1/serial", `5`, now, StatusRefused, "not writable"},
		{"press-1/broken", `5`, now, StatusFailed, "device busy"},
		{"press-1/setpoint", `{"value":1,"ttl":"10s","ts":"2020-01-01T00:00:00Z"}`, now, StatusRefused, "expired"},
		{"press-1/setpoint", `{"value":1,"ttl":"-1s"}`, now, StatusRefused, "positive duration"},
		{"press-1/setpoint", `{"value":1,"expires":"2020-01-01T00:00:00Z"}`, now, StatusRefused, "expired"},
		{"press-1/setpoint", `{"value":1}`, now.Add(-2 * time.Minute), StatusRefused, "expired"}, // max_ttl
		{"press-1/setpoint", `{"value":1,"ttl":"1h"}`, now.Add(-2 * time.Minute), StatusOK, ""},  // ttl beats max_ttl
	} {
		cmd, err := Parse(c.rest, []byte(c.payload), c.received)
		if err == nil {
			err = cmd.Execute(context.Background(), rules, write)
		}
		r := NewResult(cmd, err)
		if r.Status != c.status || !strings.Contains(r.Error, c.why) {
			t.Errorf("%s %s: %+v, want %s (%s)", c.rest, c.payload, r, c.status, c.why)
		}
		if goType.MatchString(r.Error) {
			t.Errorf("%s %s: the reason names a Go type: %s", c.rest, c.payload, r.Error)
		}
	}
	if got := fmt.Sprint(wrote); got != fmt.Sprint([]bus.Value{bus.Long(230), bus.Double(2.5), bus.Bool(true), bus.String("on"),
		bus.Double(23.5), bus.Bool(true), bus.String("text"), bus.Long(-7), bus.Long(1)}) {
		t.Errorf("written %s", got)
	}
}

// goType matches what encoding/json says about Go types ("Go value of
// type command.Command", "Go struct field", "Time.UnmarshalJSON").
var goType = regexp.MustCompile(`Go (value|struct)|of type|\.Unmarshal|command\.`)

// TestBareValueResultEchoesIt: the result of a bare-value command carries
// the value as it was sent.
func TestBareValueResultEchoesIt(t *testing.T) {
	c, err := Parse("press-1/setpoint", []byte("23.5\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := NewResult(c, nil)
	if string(r.Value) != "23.5" || r.ID != "" || r.Status != StatusOK {
		t.Fatalf("%+v", r)
	}
}

func TestParsePayloadNamesTheTag(t *testing.T) {
	c, err := ParsePayload([]byte(`{"device":"press-1","tag":"setpoint","value":5,"id":"x"}`), time.Now())
	if err != nil || c.Device != "press-1" || c.Tag != "setpoint" || c.ID != "x" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := ParsePayload([]byte(`{"value":5}`), time.Now()); !errors.Is(err, ErrRefused) {
		t.Fatalf("no device and tag: %v", err)
	}
	// A bare value cannot name its tag.
	if _, err := ParsePayload([]byte(`5`), time.Now()); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "bare value") {
		t.Fatalf("bare value: %v", err)
	}
	// On a command topic the topic names the tag, not the payload.
	c, err = Parse("press-1/setpoint", []byte(`{"device":"other","tag":"x","value":5}`), time.Now())
	if err != nil || c.Device != "press-1" || c.Tag != "setpoint" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestCacheAnswersRepeatsAndForgetsOldest(t *testing.T) {
	k := NewCache(2)
	a := &Command{ID: "a", Device: "d", Tag: "t"}
	if first, _, _ := k.Begin(a); !first {
		t.Fatal("a new command is not first")
	}
	if first, _, done := k.Begin(a); first || done {
		t.Fatalf("a repeat while running: first=%v done=%v", first, done)
	}
	k.Done(a, Result{ID: "a", Status: StatusOK})
	if first, r, done := k.Begin(a); first || !done || r.Status != StatusOK {
		t.Fatalf("a repeat after it ran: first=%v done=%v %+v", first, done, r)
	}
	// The same id on another tag is another command.
	if first, _, _ := k.Begin(&Command{ID: "a", Device: "d", Tag: "u"}); !first {
		t.Fatal("same id on another tag taken for a repeat")
	}
	k.Begin(&Command{ID: "b", Device: "d", Tag: "t"})
	if first, _, _ := k.Begin(a); !first {
		t.Fatal("the oldest entry was not forgotten")
	}
	noID := &Command{Device: "d", Tag: "t"}
	k.Begin(noID)
	if first, _, _ := k.Begin(noID); !first {
		t.Fatal("a command without id was deduplicated")
	}
}
