package transform

import (
	"math"
	"strconv"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func TestDeadband(t *testing.T) {
	d, l, s := bus.Double, bus.Long, bus.String
	nan := math.NaN()
	cases := []struct {
		name         string
		abs, percent float64
		in           []bus.Record
		want         []bool
	}{
		{
			name: "first value passes, abs band is inclusive",
			abs:  0.5,
			in:   []bus.Record{rec("t", d(10)), rec("t", d(10.5)), rec("t", d(9.5)), rec("t", d(10.6))},
			want: []bool{true, false, false, true},
		},
		{
			name: "band is around the last forwarded value, not the last seen",
			abs:  1,
			in:   []bus.Record{rec("t", d(10)), rec("t", d(10.8)), rec("t", d(11.6)), rec("t", d(12.2))},
			want: []bool{true, false, true, false},
		},
		{
			name:    "percent of last forwarded",
			percent: 10,
			in:      []bus.Record{rec("t", d(100)), rec("t", d(110)), rec("t", d(89)), rec("t", d(80.2)), rec("t", d(72))},
			want:    []bool{true, false, true, false, true},
		},
		{
			name:    "either band drops",
			abs:     1,
			percent: 10,
			in:      []bus.Record{rec("t", d(5)), rec("t", d(5.9)), rec("t", d(100)), rec("t", d(109))},
			want:    []bool{true, false, true, false},
		},
		{
			name:    "percent of zero only drops repeats",
			percent: 50,
			in:      []bus.Record{rec("t", d(0)), rec("t", d(0)), rec("t", d(0.001))},
			want:    []bool{true, false, true},
		},
		{
			name: "zero bands drop exact repeats only",
			in:   []bus.Record{rec("t", d(1)), rec("t", d(1)), rec("t", l(1)), rec("t", d(1.0000001))},
			want: []bool{true, false, false, true},
		},
		{
			name: "negative band drops only exact repeats",
			abs:  -1,
			in:   []bus.Record{rec("t", d(1)), rec("t", d(1)), rec("t", d(1.5))},
			want: []bool{true, false, true},
		},
		{
			name: "long values",
			abs:  5,
			in:   []bus.Record{rec("t", l(100)), rec("t", l(105)), rec("t", l(94))},
			want: []bool{true, false, true},
		},
		{
			name: "booleans count as 0 and 1",
			abs:  0.5,
			in:   []bus.Record{rec("t", bus.Bool(false)), rec("t", bus.Bool(false)), rec("t", bus.Bool(true))},
			want: []bool{true, false, true},
		},
		{
			name: "nan repeats are dropped, nan changes pass",
			abs:  1,
			in:   []bus.Record{rec("t", d(nan)), rec("t", d(nan)), rec("t", d(1)), rec("t", d(nan))},
			want: []bool{true, false, true, true},
		},
		{
			name: "infinity",
			abs:  1,
			in:   []bus.Record{rec("t", d(math.Inf(1))), rec("t", d(math.Inf(1))), rec("t", d(1e308))},
			want: []bool{true, false, true},
		},
		{
			name: "strings drop only when equal",
			abs:  100,
			in:   []bus.Record{rec("t", s("run")), rec("t", s("run")), rec("t", s("stop")), rec("t", s("run"))},
			want: []bool{true, false, true, true},
		},
		{
			name: "kind change from numeric to string and back",
			abs:  100,
			in:   []bus.Record{rec("t", d(1)), rec("t", s("1")), rec("t", s("1")), rec("t", d(1)), rec("t", bus.Null()), rec("t", bus.Null())},
			want: []bool{true, true, false, true, true, false},
		},
		{
			name: "quality change always passes",
			abs:  10,
			in: []bus.Record{
				rec("t", d(1)),
				withQuality(rec("t", d(1)), bus.Bad),
				withQuality(rec("t", d(1)), bus.Bad),
				rec("t", d(1)),
			},
			want: []bool{true, true, false, true},
		},
		{
			name: "series are independent",
			abs:  1,
			in: []bus.Record{
				rec("a", d(1)), rec("b", d(1)), rec("a", d(1.5)),
				{Source: "other", Device: "d1", Tag: "a", Value: d(1)},
				{Source: "plc", Device: "d2", Tag: "a", Value: d(1)},
			},
			want: []bool{true, true, false, true, true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, Deadband(tc.abs, tc.percent), tc.in); !equalBools(got, tc.want) {
				t.Fatalf("forwarded %v, want %v", got, tc.want)
			}
		})
	}
}

// A change the rest of the chain refused must be offered again, or it is lost
// for as long as the value stays put.
func TestDeadbandTracksWhatTheChainAccepted(t *testing.T) {
	refuseFirst50 := true
	s := sink{reject: func(r *bus.Record) bool {
		v, _ := r.Value.Float()
		if v == 50 && refuseFirst50 {
			refuseFirst50 = false
			return true
		}
		return false
	}}
	in := []bus.Record{rec("t", bus.Double(10)), rec("t", bus.Double(50)), rec("t", bus.Double(50)), rec("t", bus.Double(50))}
	got := runWith(&s, Deadband(1, 0), in)
	if want := []bool{true, false, true, false}; !equalBools(got, want) {
		t.Fatalf("forwarded %v, want %v", got, want)
	}
}

// The band compares values as they enter the deadband, not as a later scale
// step rewrote them.
func TestDeadbandBeforeScale(t *testing.T) {
	var s sink
	chain := Chain(s.next, Deadband(1, 0), Scale(1000, 0))
	for _, v := range []float64{1, 1.5, 2.1, 2.5} {
		r := rec("t", bus.Double(v))
		chain(&r)
	}
	if len(s.got) != 2 {
		t.Fatalf("forwarded %d records, want 2: %+v", len(s.got), s.got)
	}
}

func TestDeadbandCap(t *testing.T) {
	m := Deadband(10, 0)
	var s sink
	chain := Chain(s.next, m)
	for i := range MaxKeys {
		r := rec("t"+strconv.Itoa(i), bus.Double(1))
		chain(&r)
	}
	// Full: a known series is still filtered, a new one passes every time.
	known, fresh := rec("t0", bus.Double(1)), rec("new", bus.Double(1))
	if r := known; chain(&r) {
		t.Fatal("known series was not filtered once the table was full")
	}
	for range 3 {
		if r := fresh; !chain(&r) {
			t.Fatal("series beyond the cap was filtered; want pass-through")
		}
	}
}
