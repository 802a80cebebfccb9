package modbus

import (
	"fmt"
	"strings"
	"testing"
)

// planOf decodes a device's tag list (YAML flow entries, one per line)
// and returns its plan as "area start+count[tags]" strings.
func planOf(t *testing.T, settings, tags string, l *learnedDevice) []string {
	t.Helper()
	m := mustDecode(t, "127.0.0.1:502", "type: modbus\n"+settings+"\ndevices:\n  - name: d\n    endpoint: tcp://{addr}\n    tags:\n"+tags)
	specs, p := m.Config.build()
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	d := specs[0]
	var out []string
	for _, r := range d.plan(l, nil) {
		var names []string
		for _, i := range r.tags {
			names = append(names, d.tags[i].name)
		}
		out = append(out, fmt.Sprintf("%s %d+%d[%s]", r.area, r.start, r.count, strings.Join(names, " ")))
	}
	return out
}

func TestPlan(t *testing.T) {
	many := func(n, step int, area, typ string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "      - {name: t%d, area: %s, address: %d, type: %s}\n", i, area, i*step, typ)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, settings, tags string
		learned              *learnedDevice
		want                 []string // full plan, or only the count when one entry "#N"
	}{
		{name: "200 contiguous registers: 2 requests", tags: many(200, 1, "holding", "uint16"), want: []string{"#2"}},
		{name: "125 registers: 1 request", tags: many(125, 1, "holding", "uint16"), want: []string{"#1"}},
		{name: "126 registers: 2", tags: many(126, 1, "holding", "uint16"), want: []string{"#2"}},
		{name: "float32 pairs do not straddle a request", tags: many(63, 2, "input", "float32"), want: []string{"input 0+124[" + seq(0, 62) + "]", "input 124+2[t62]"}},
		{name: "2000 coils: 1 request", tags: many(2000, 1, "coil", "bool"), want: []string{"#1"}},
		{name: "2001 coils: 2", tags: many(2001, 1, "coil", "bool"), want: []string{"#2"}},
		{
			name: "areas are read apart", tags: "      - {name: a, address: 40001}\n      - {name: b, address: 30001}\n      - {name: c, address: 00001}\n      - {name: d, address: 10001}\n",
			want: []string{"coil 0+1[c]", "discrete 0+1[d]", "input 0+1[b]", "holding 0+1[a]"},
		},
		{
			name: "gap within max_gap is read through", settings: "max_gap: 3",
			tags: "      - {name: a, address: 40001}\n      - {name: b, address: 40005}\n      - {name: c, address: 40010}\n",
			want: []string{"holding 0+5[a b]", "holding 9+1[c]"},
		},
		{
			name: "bits and aliases share their register", tags: "      - {name: w, address: 40001, type: uint32}\n      - {name: f, address: 40002, type: bit, bit: 3}\n      - {name: s, address: 40001, type: int32}\n",
			want: []string{"holding 0+2[w s f]"},
		},
		{
			name: "profile max_registers", settings: "profiles: {p: {max_registers: 32}}\nprofile: p",
			tags: many(100, 1, "holding", "uint16"), want: []string{"#4"},
		},
		{
			name: "profile one_request_per_tag", settings: "profiles: {p: {one_request_per_tag: true}}\nprofile: p",
			tags: "      - {name: a, address: 40001}\n      - {name: b, address: 40002, type: float32}\n      - {name: c, address: 40002, type: int32}\n",
			want: []string{"holding 0+1[a]", "holding 1+2[b c]"},
		},
		{
			name: "profile string_byte_per_register", settings: "profiles: {p: {string_byte_per_register: true}}\nprofile: p",
			tags: "      - {name: s, address: 40001, type: string, length: 10}\n", want: []string{"holding 0+10[s]"},
		},
		{
			name: "learned limit", tags: many(100, 1, "holding", "uint16"),
			learned: &learnedDevice{Areas: map[string]*learnedArea{"holding": {MaxCount: 40}}}, want: []string{"#3"},
		},
		{
			name: "learned holes", settings: "max_gap: 20",
			tags:    "      - {name: a, address: 40001}\n      - {name: b, address: 40011}\n      - {name: c, address: 40021}\n      - {name: d, address: 40022}\n",
			learned: &learnedDevice{Areas: map[string]*learnedArea{"holding": {Avoid: []rng{{3, 5}, {20, 20}}}}},
			want:    []string{"holding 0+1[a]", "holding 10+1[b]", "holding 20+1[c]", "holding 21+1[d]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planOf(t, tc.settings, tc.tags, tc.learned)
			if len(tc.want) == 1 && strings.HasPrefix(tc.want[0], "#") {
				if want := tc.want[0][1:]; fmt.Sprint(len(got)) != want {
					t.Fatalf("%d requests, want %s:\n%s", len(got), want, strings.Join(got, "\n"))
				}
				return
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func seq(from, to int) string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, fmt.Sprintf("t%d", i))
	}
	return strings.Join(s, " ")
}

// TestOrders checks the order helpers against the worked example of the
// README: 0x11223344 in each order.
func TestOrders(t *testing.T) {
	for o, want := range map[Order][]byte{
		ABCD: {0x11, 0x22, 0x33, 0x44},
		BADC: {0x22, 0x11, 0x44, 0x33},
		CDAB: {0x33, 0x44, 0x11, 0x22},
		DCBA: {0x44, 0x33, 0x22, 0x11},
	} {
		b := make([]byte, 4)
		o.PutUint(b, 2, 0x11223344)
		if string(b) != string(want) {
			t.Errorf("%s: % x, want % x", o, b, want)
		}
		if got := o.Uint(want, 2); got != 0x11223344 {
			t.Errorf("%s: read %#x", o, got)
		}
	}
	// 21.5 as float32 is 0x41AC0000: the README's table.
	for o, want := range map[Order]string{ABCD: "41ac 0000", BADC: "ac41 0000", CDAB: "0000 41ac", DCBA: "0000 ac41"} {
		b := make([]byte, 4)
		o.PutUint(b, 2, 0x41AC0000)
		if got := fmt.Sprintf("%x %x", b[:2], b[2:]); got != want || o.Float32(b) != 21.5 {
			t.Errorf("%s: %s (%v), want %s", o, got, o.Float32(b), want)
		}
	}
}
