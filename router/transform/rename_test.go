package transform

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func TestRename(t *testing.T) {
	r := bus.Record{
		Source: "opc", Device: "press1", Tag: "temp/oil", Unit: "degC",
		Attrs: map[string]string{"line": "l2", "cell": "c9"},
	}
	cases := []struct {
		tmpl, want string
	}{
		{"{tag}", "temp/oil"},
		{"fixed", "fixed"},
		{"{source}/{device}/{tag}", "opc/press1/temp/oil"},
		{"{attr.line}/{attr.cell}/{tag}[{unit}]", "l2/c9/temp/oil[degC]"},
		{"{attr.missing}x", "x"},
		{"{tag}.{tag}", "temp/oil.temp/oil"},
		{"{attr.a}{attr.b}{attr.c}{attr.d}{attr.line}", "l2"}, // beyond the cached attribute count
		{"ünï/{device}", "ünï/press1"},
	}
	for _, tc := range cases {
		t.Run(tc.tmpl, func(t *testing.T) {
			m, err := Rename(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			var s sink
			// Twice: the second answer comes from the cache.
			runWith(&s, m, []bus.Record{r, r})
			for _, got := range s.got {
				if got.Tag != tc.want {
					t.Fatalf("tag %q, want %q", got.Tag, tc.want)
				}
			}
		})
	}
}

// The cache is keyed by every input the template reads, so records that
// differ only there must not share an entry.
func TestRenameCacheKey(t *testing.T) {
	m, err := Rename("{device}/{attr.line}/{tag}")
	if err != nil {
		t.Fatal(err)
	}
	in := []bus.Record{
		{Device: "d", Tag: "t", Attrs: map[string]string{"line": "1"}},
		{Device: "d", Tag: "t", Attrs: map[string]string{"line": "2"}},
		{Device: "d", Tag: "t", Unit: "ignored", Attrs: map[string]string{"line": "1"}},
		{Device: "e", Tag: "t"},
	}
	var s sink
	runWith(&s, m, in)
	want := []string{"d/1/t", "d/2/t", "d/1/t", "e//t"}
	for i, r := range s.got {
		if r.Tag != want[i] {
			t.Errorf("record %d: tag %q, want %q", i, r.Tag, want[i])
		}
	}
}

func TestRenameErrors(t *testing.T) {
	cases := []struct {
		tmpl   string
		column int
		reason string
	}{
		{"", 1, "empty template"},
		{"{tag", 1, `unbalanced "{"`},
		{"a/{tag/{device}", 3, `unbalanced "{"`},
		{"tag}", 4, `unbalanced "}"`},
		{"{}", 1, "unknown placeholder {}"},
		{"x/{Tag}", 3, "unknown placeholder {Tag}"},
		{"{attr.}", 1, "needs an attribute name"},
		{"ü{foo}", 2, "unknown placeholder {foo}"},
	}
	for _, tc := range cases {
		t.Run(tc.tmpl, func(t *testing.T) {
			_, err := Rename(tc.tmpl)
			if !errors.Is(err, ErrInvalidTemplate) {
				t.Fatalf("err = %v, want ErrInvalidTemplate", err)
			}
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("err = %T, want *TemplateError", err)
			}
			if te.Column != tc.column || !strings.Contains(te.Reason, tc.reason) {
				t.Fatalf("column %d reason %q, want column %d reason containing %q", te.Column, te.Reason, tc.column, tc.reason)
			}
			if msg := err.Error(); !strings.Contains(msg, validPlaceholders) {
				t.Fatalf("error %q does not list the valid placeholders", msg)
			}
		})
	}
}
