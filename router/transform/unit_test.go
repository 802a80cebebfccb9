package transform

import (
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func TestSetUnit(t *testing.T) {
	cases := []struct{ name, before, unit string }{
		{"set", "", "degC"},
		{"overwrite", "degF", "degC"},
		{"clear", "degF", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rec("t", bus.Double(1))
			r.Unit = tc.before
			var s sink
			runWith(&s, SetUnit(tc.unit), []bus.Record{r})
			if len(s.got) != 1 || s.got[0].Unit != tc.unit {
				t.Fatalf("got %+v, want unit %q", s.got, tc.unit)
			}
		})
	}
}
