package transform

import (
	"math"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func TestScale(t *testing.T) {
	cases := []struct {
		name           string
		factor, offset float64
		in, want       bus.Value
	}{
		{"double", 2, 1, bus.Double(1.5), bus.Double(4)},
		{"long becomes double", 0.1, 0, bus.Long(25), bus.Double(2.5)},
		{"negative long", 1, -10, bus.Long(-5), bus.Double(-15)},
		{"bool true", 10, 0, bus.Bool(true), bus.Double(10)},
		{"bool false offset", 10, 3, bus.Bool(false), bus.Double(3)},
		{"identity still double", 1, 0, bus.Long(7), bus.Double(7)},
		{"nan stays nan", 2, 1, bus.Double(math.NaN()), bus.Double(math.NaN())},
		{"string unchanged", 2, 1, bus.String("12"), bus.String("12")},
		{"bytes unchanged", 2, 1, bus.Bytes([]byte{1}), bus.Bytes([]byte{1})},
		{"null unchanged", 2, 1, bus.Null(), bus.Null()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s sink
			runWith(&s, Scale(tc.factor, tc.offset), []bus.Record{rec("t", tc.in)})
			if len(s.got) != 1 {
				t.Fatalf("scale dropped the record")
			}
			if got := s.got[0].Value; !got.Equal(tc.want) {
				t.Fatalf("got %v (%v), want %v (%v)", got, got.Kind, tc.want, tc.want.Kind)
			}
		})
	}
}
