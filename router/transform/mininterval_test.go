package transform

import (
	"strconv"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

func TestMinInterval(t *testing.T) {
	v := bus.Double(1)
	a, b := rec("a", v), rec("b", v)
	cases := []struct {
		name string
		d    time.Duration
		in   []bus.Record
		want []bool
	}{
		{
			name: "drops within the interval, boundary passes",
			d:    time.Second,
			in:   []bus.Record{at(a, 0), at(a, 500), at(a, 999), at(a, 1000), at(a, 1999), at(a, 2500)},
			want: []bool{true, false, false, true, false, true},
		},
		{
			name: "measured from the last forwarded record",
			d:    time.Second,
			in:   []bus.Record{at(a, 0), at(a, 900), at(a, 1800), at(a, 2000)},
			want: []bool{true, false, true, false},
		},
		{
			name: "series are independent",
			d:    time.Second,
			in:   []bus.Record{at(a, 0), at(b, 100), at(a, 200), at(b, 1100)},
			want: []bool{true, true, false, true},
		},
		{
			name: "late record within the interval is dropped",
			d:    time.Second,
			in:   []bus.Record{at(a, 5000), at(a, 4500), at(a, 5999)},
			want: []bool{true, false, false},
		},
		{
			name: "clock reset passes and restarts the window",
			d:    time.Second,
			in:   []bus.Record{at(a, 60000), at(a, 0), at(a, 500), at(a, 1000)},
			want: []bool{true, true, false, true},
		},
		{
			name: "zero interval forwards everything",
			d:    0,
			in:   []bus.Record{at(a, 0), at(a, 0), at(a, 0)},
			want: []bool{true, true, true},
		},
		{
			name: "ingest time stands in for a missing source time",
			d:    time.Second,
			in: []bus.Record{
				{Tag: "x", IngestTime: int64(time.Hour)},
				{Tag: "x", IngestTime: int64(time.Hour + 10*time.Millisecond)},
				{Tag: "x", IngestTime: int64(time.Hour + time.Second)},
			},
			want: []bool{true, false, true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, MinInterval(tc.d), tc.in); !equalBools(got, tc.want) {
				t.Fatalf("forwarded %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMinIntervalTracksWhatTheChainAccepted(t *testing.T) {
	s := sink{reject: func(r *bus.Record) bool { return r.Seq == 1 }}
	r0, r1, r2 := at(rec("a", bus.Long(1)), 0), at(rec("a", bus.Long(1)), 1000), at(rec("a", bus.Long(1)), 1200)
	r1.Seq = 1
	got := runWith(&s, MinInterval(time.Second), []bus.Record{r0, r1, r2})
	if want := []bool{true, false, true}; !equalBools(got, want) {
		t.Fatalf("forwarded %v, want %v", got, want)
	}
}

func TestMinIntervalCap(t *testing.T) {
	var s sink
	chain := Chain(s.next, MinInterval(time.Hour))
	for i := range MaxKeys {
		r := at(rec("t"+strconv.Itoa(i), bus.Long(1)), 0)
		chain(&r)
	}
	if r := at(rec("t1", bus.Long(1)), 1); chain(&r) {
		t.Fatal("known series was not limited once the table was full")
	}
	for i := range 3 {
		if r := at(rec("new", bus.Long(1)), int64(i)); !chain(&r) {
			t.Fatal("series beyond the cap was limited; want pass-through")
		}
	}
}
