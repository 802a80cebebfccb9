package transform

import (
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// sink collects what reaches the end of a chain. reject makes it refuse
// records, standing in for a later step that drops them.
type sink struct {
	got    []bus.Record
	reject func(r *bus.Record) bool
}

func (s *sink) next(r *bus.Record) bool {
	if s.reject != nil && s.reject(r) {
		return false
	}
	s.got = append(s.got, *r)
	return true
}

// run feeds copies of in through m and reports which were forwarded.
func run(t *testing.T, m Middleware, in []bus.Record) []bool {
	t.Helper()
	var s sink
	return runWith(&s, m, in)
}

func runWith(s *sink, m Middleware, in []bus.Record) []bool {
	chain := Chain(s.next, m)
	out := make([]bool, len(in))
	for i := range in {
		r := in[i]
		out[i] = chain(&r)
	}
	return out
}

func rec(tag string, v bus.Value) bus.Record {
	return bus.Record{Source: "plc", Device: "d1", Tag: tag, Value: v}
}

func at(r bus.Record, ms int64) bus.Record {
	r.SourceTime = time.Unix(1_700_000_000, 0).UnixNano() + ms*int64(time.Millisecond)
	return r
}

func withQuality(r bus.Record, q bus.Quality) bus.Record {
	r.Quality = q
	return r
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChainOrder(t *testing.T) {
	var order []string
	mark := func(name string) Middleware {
		return func(next Next) Next {
			return func(r *bus.Record) bool {
				order = append(order, name)
				return next(r)
			}
		}
	}
	var s sink
	chain := Chain(s.next, mark("a"), nil, mark("b"), mark("c"))
	r := rec("t", bus.Long(1))
	if !chain(&r) {
		t.Fatal("chain dropped the record")
	}
	if got := len(s.got); got != 1 {
		t.Fatalf("final saw %d records, want 1", got)
	}
	if got := order; len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("order = %v, want [a b c]", got)
	}

	// No middleware at all is the final step itself.
	if !Chain(s.next)(&r) {
		t.Fatal("empty chain dropped the record")
	}
}

func TestFilter(t *testing.T) {
	keepGood := Filter(func(r *bus.Record) bool { return r.Quality == bus.Good })
	in := []bus.Record{
		rec("a", bus.Long(1)),
		withQuality(rec("a", bus.Long(1)), bus.Bad),
		withQuality(rec("a", bus.Long(1)), bus.Uncertain),
	}
	if got, want := run(t, keepGood, in), []bool{true, false, false}; !equalBools(got, want) {
		t.Fatalf("forwarded %v, want %v", got, want)
	}
}

// TestZeroAlloc holds every transform to the hot-path promise: once the state
// and caches are warm, a record costs no allocation.
func TestZeroAlloc(t *testing.T) {
	rn, err := Rename("{device}/{attr.line}/{tag}")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		m    Middleware
	}{
		{"scale", Scale(2, 1)},
		{"deadband", Deadband(0.5, 1)},
		{"mininterval", MinInterval(time.Second)},
		{"rename", rn},
		{"unit", SetUnit("degC")},
		{"filter", Filter(func(r *bus.Record) bool { return r.Seq%2 == 0 })},
		{"all", func(next Next) Next {
			return Chain(next, Scale(2, 1), Deadband(0.5, 1), MinInterval(time.Second), rn, SetUnit("degC"))
		}},
	}
	attrs := map[string]string{"line": "l1"}
	var in []bus.Record
	for i := range 64 {
		r := at(rec([]string{"a", "b", "c", "d"}[i%4], bus.Double(float64(i%7))), int64(i)*300)
		r.Seq = uint64(i)
		r.Attrs = attrs
		in = append(in, r)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chain := Chain(func(*bus.Record) bool { return true }, tc.m)
			var r bus.Record
			for i := range in { // warm up
				r = in[i]
				chain(&r)
			}
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				r = in[i%len(in)]
				r.SourceTime += int64(i) * int64(time.Second) // keep MinInterval forwarding
				chain(&r)
				i++
			})
			if allocs != 0 {
				t.Fatalf("%v allocs per record, want 0", allocs)
			}
		})
	}
}
