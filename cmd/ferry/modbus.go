package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-gateway/ferry/admin/discover"
	"github.com/ferry-gateway/ferry/connectors/modbus"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

// scanCmd reads a range of a Modbus device and prints each register in
// every reading an integrator may need to recognise a value.
func scanCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("scan", stderr)
	unit := fs.Int("unit", 1, "unit ID (slave address)")
	area := fs.String("area", "holding", "area: coil, discrete, input or holding")
	rangeFlag := fs.String("range", "0-99", "0-based addresses FIRST-LAST")
	timeout := fs.Duration("timeout", time.Second, "per request")
	orderFlag := fs.String("order", "ABCD", "word and byte order of the int32, uint32, int64 and float64 columns: "+strings.Join(modbus.OrderNames, ", "))
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry scan modbus ENDPOINT [--unit N] [--area holding] [--range 0-199] [--order ABCD] [--timeout 1s]")
		fmt.Fprintln(stderr, "ENDPOINT is tcp://HOST[:PORT], rtu-over-tcp://HOST[:PORT], rtu:///dev/PORT?baud=19200 or ascii:///dev/PORT")
		printFlags(fs)
	}
	pos, code, ok := parseInterleaved(fs, args, func(p []string) bool { return len(p) == 2 && p[0] == "modbus" })
	if !ok {
		return code
	}
	a, okArea := modbus.ParseArea(*area)
	first, last, errRange := mbParseRange(*rangeFlag)
	order, okOrder := modbus.ParseOrder(strings.ToUpper(*orderFlag))
	switch {
	case !okArea:
		fmt.Fprintf(stderr, "ferry scan: --area %q is not one of %s\n", *area, strings.Join(modbus.AreaNames, ", "))
		return 2
	case !okOrder:
		fmt.Fprintf(stderr, "ferry scan: --order %q is not one of %s\n", *orderFlag, strings.Join(modbus.OrderNames, ", "))
		return 2
	case errRange != nil:
		fmt.Fprintf(stderr, "ferry scan: --range %q: %v\n", *rangeFlag, errRange)
		return 2
	case *unit < 0 || *unit > 255:
		fmt.Fprintf(stderr, "ferry scan: --unit %d is not in 0..255\n", *unit)
		return 2
	}
	c, err := modbus.Open(pos[1], *timeout)
	if err != nil {
		fmt.Fprintln(stderr, "ferry scan:", err)
		return 2
	}
	defer c.Close()
	count := last - first + 1
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if a.Bits() {
		bits, reqs, err := c.Bits(ctx, uint8(*unit), a, first, count)
		more, n, end := mbPastEnd(ctx, func(ctx context.Context, start, n int) ([]bool, int, error) {
			return c.Bits(ctx, uint8(*unit), a, start, n)
		}, first, last, err)
		bits, reqs = append(bits, more...), reqs+n
		fmt.Fprintf(stdout, "%s unit %d, %s %d-%d: %d read in %s\n", pos[1], *unit, a, first, last, len(bits), plural(reqs, "request"))
		fmt.Fprintln(w, "address\tmodicon\tvalue\t")
		for i, b := range bits {
			fmt.Fprintf(w, "%d\t%s\t%t\t\n", first+i, discover.Modicon(a, first+i), b)
		}
		_ = w.Flush()
		return mbScanEnd(stderr, end, err)
	}
	regs, reqs, err := c.Registers(ctx, uint8(*unit), a, first, count)
	more, n, end := mbPastEnd(ctx, func(ctx context.Context, start, n int) ([]uint16, int, error) {
		return c.Registers(ctx, uint8(*unit), a, start, n)
	}, first, last, err)
	regs, reqs = append(regs, more...), reqs+n
	fmt.Fprintf(stdout, "%s unit %d, %s %d-%d: %d registers read in %s\n", pos[1], *unit, a, first, last, len(regs), plural(reqs, "request"))
	o := order.String()
	fmt.Fprintln(w, "address\tmodicon\thex\tuint16\tint16\tchars\tfloat32 ABCD\tfloat32 CDAB\tfloat32 BADC\tfloat32 DCBA\t"+
		"int32 "+o+"\tuint32 "+o+"\tint64 "+o+"\tfloat64 "+o+"\t")
	var quad [8]byte
	for i, r := range discover.Decode(a, first, regs) {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%s\t", r.Address, r.Modicon, r.Hex, r.Uint16, r.Int16, r.Chars)
		for _, k := range []string{"float32 ABCD", "float32 CDAB", "float32 BADC", "float32 DCBA", "int32 " + o, "uint32 " + o} {
			fmt.Fprintf(w, "%s\t", r.Pairs[k]) // "" for the last register: no pair
		}
		if i+3 < len(regs) {
			for k := range 4 {
				binary.BigEndian.PutUint16(quad[2*k:], regs[i+k])
			}
			u := order.Uint(quad[:], 4)
			fmt.Fprintf(w, "%d\t%s\t", int64(u), mbFloat64(math.Float64frombits(u)))
		} else {
			fmt.Fprint(w, "\t\t")
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	return mbScanEnd(stderr, end, err)
}

// mbPastEnd looks into a scan that stopped with "illegal data address":
// most devices answer that for a read that runs past their last register,
// and refuse the whole request, registers that exist included. It reads
// the refused request's range in halves to find the last address the
// device answers, and returns what it read there (so the table shows
// every register that exists), the requests it made, and a sentence for
// the user. Any other error, or none, it leaves alone.
func mbPastEnd[T any](ctx context.Context, read func(ctx context.Context, start, n int) ([]T, int, error), first, last int, err error) ([]T, int, string) {
	var re *modbus.RequestError
	var ee *modbus.ExceptionError
	if !errors.As(err, &re) || !errors.As(err, &ee) || ee.Code != 2 {
		return nil, 0, ""
	}
	start := re.Start
	var got []T
	reqs, lo, hi := 0, 0, re.Count // start+lo-1 answers; start+hi-1 does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		vals, n, err := read(ctx, start, mid)
		reqs += n
		switch {
		case err == nil:
			lo, got = mid, vals
		case errors.As(err, &ee) && ee.Code == 2:
			hi = mid
		default:
			return got, reqs, ""
		}
	}
	end := start + lo // the first address the device refuses
	what := fmt.Sprintf("%s %d-%d", re.Area, end, last)
	if end == first {
		return got, reqs, fmt.Sprintf("%s: the device answers exception 0x02 (%s) from %d on: the range starts past the device's end or in a gap of its map; try a lower --range",
			what, modbus.ExceptionName(2), end)
	}
	return got, reqs, fmt.Sprintf("%s: past the device's end (or a gap in its map): it answers exception 0x02 (%s) from %d on; the last address it has is %d",
		what, modbus.ExceptionName(2), end, end-1)
}

// mbScanEnd reports how a scan ended: past the device's end (said in
// words rather than as the bare exception), another error, or fine.
func mbScanEnd(stderr io.Writer, end string, err error) int {
	if end != "" {
		fmt.Fprintln(stderr, "ferry scan:", end)
		return 1
	}
	return mbScanErr(stderr, err)
}

func mbScanErr(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintln(stderr, "ferry scan:", err)
		return 1
	}
	return 0
}

func mbParseRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("expected FIRST-LAST, 0-based, such as 0-199")
	case first < 0 || last > 65535 || last < first:
		return 0, 0, fmt.Errorf("expected 0 <= FIRST <= LAST <= 65535")
	}
	return first, last, nil
}

// mbFloat64 prints a float64 as discover.Float prints a float32: tiny and
// huge ones, seldom readings, in short exponent form.
func mbFloat64(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f != 0 && (math.Abs(f) < 1e-6 || math.Abs(f) > 1e12):
		return strconv.FormatFloat(f, 'g', 4, 64)
	}
	return strconv.FormatFloat(f, 'g', 12, 64)
}

// planCmd prints each modbus device's read plan.
func planCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("plan", stderr)
	file := configFlag(fs, "config `file` (or give it as the argument)")
	if code, ok := parseConfigArgs(fs, file, args); !ok {
		return code
	}
	cfg, ok := loadOrReport(*file, stdout)
	if !ok {
		return 1
	}
	n := 0
	for _, m := range cfg.Modules {
		mb, ok := m.Connector.(*modbus.Modbus)
		if !ok {
			continue
		}
		n++
		learned := filepath.Join(cfg.DataDir, m.Name, modbus.LearnedFile)
		if _, err := os.Stat(learned); err != nil {
			learned = ""
		}
		plans, err := mb.Plan(learned)
		if err != nil {
			fmt.Fprintf(stderr, "ferry plan: %s: %v\n", m.Name, err)
			return 1
		}
		for _, p := range plans {
			fmt.Fprintf(stdout, "%s/%s: %s unit %d, every %s: %s in %s\n",
				m.Name, p.Device, p.Endpoint, p.Unit, p.PollInterval, plural(p.Tags, "tag"), plural(len(p.Requests), "request"))
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			for _, r := range p.Requests {
				fmt.Fprintf(w, "  fc %d\t%s\t%d-%d\t(%d)\t%s\n", r.Function, r.Area, r.Start, r.Start+r.Count-1, r.Count, strings.Join(r.Tags, " "))
			}
			_ = w.Flush()
			for _, l := range p.Learned {
				fmt.Fprintf(stdout, "  learned: %s\n", l)
			}
		}
	}
	if n == 0 {
		fmt.Fprintf(stderr, "ferry plan: %s has no modbus connector\n", *file)
		return 1
	}
	return 0
}

// simCmd runs a simulator until the context ends (SIGINT, SIGTERM).
func simCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("sim", stderr)
	addr := fs.String("addr", "127.0.0.1:5020", "address to listen on")
	var lf logFlags
	lf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry sim modbus [--addr 127.0.0.1:5020]")
		printFlags(fs)
	}
	_, code, ok := parseInterleaved(fs, args, func(p []string) bool { return len(p) == 1 && p[0] == "modbus" })
	if !ok {
		return code
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ferry sim:", err)
		return 2
	}
	cfg := simmodbus.DemoConfig()
	cfg.Addr, cfg.Logger = *addr, logger
	s, err := simmodbus.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ferry sim:", err)
		return 1
	}
	fmt.Fprintf(stdout, "modbus sim listening on %s: unit 1 with the demo registers; try: ferry scan modbus tcp://%s --range 0-17\n", s.Addr(), s.Addr())
	return runUntilDone(ctx, s.Close, stderr)
}

// runUntilDone waits for the context (SIGINT, SIGTERM), then closes a
// simulator.
func runUntilDone(ctx context.Context, closeFn func() error, stderr io.Writer) int {
	<-ctx.Done()
	if err := closeFn(); err != nil {
		fmt.Fprintln(stderr, "ferry sim:", err)
		return 1
	}
	return 0
}
