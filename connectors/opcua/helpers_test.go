package opcua

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/conf"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// sim starts a simulator for the test.
func sim(t testing.TB, cfg simopcua.Config) *simopcua.Server {
	t.Helper()
	s, err := simopcua.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// decode builds a connector from YAML the way ferry's loader does:
// parse, strict decode, defaults, validate.
func decode(t testing.TB, text string) *OPCUA {
	t.Helper()
	c, errs := tryDecode(text)
	if len(errs) > 0 {
		t.Fatalf("config does not validate:\n%v\n---\n%s", errs, text)
	}
	return c
}

func tryDecode(text string) (*OPCUA, conf.Errors) {
	src, err := conf.Parse("ferry.yaml", []byte(text))
	if err != nil {
		return nil, err.(conf.Errors)
	}
	c := &OPCUA{}
	return c, connectors.Decode(src, src.Root, c, "")
}

// fast is the part of a test config that makes recovery quick.
const fast = fastTop + "subscription:\n" + fastSub

const (
	fastTop = "timeout: 2s\nreconnect: {min: 20ms, max: 200ms}\n"
	fastSub = "  publishing_interval: 20ms\n  keepalive_count: 5\n  watchdog: 400ms\n"
)

// config renders a config for sim s: the endpoint, then extra YAML.
func config(s *simopcua.Server, extra string) string {
	return "type: opcua\nendpoint: " + s.Endpoint() + "\ndevice: plc\n" + strings.TrimSpace(extra) + "\n"
}

// rig runs a connector on an in-memory bus and reads what it emits.
type rig struct {
	*conntest.Runner
	c   *OPCUA
	dir string
}

func run(t testing.TB, c *OPCUA) *rig {
	t.Helper()
	return runIn(t, c, t.TempDir())
}

func runIn(t testing.TB, c *OPCUA, dir string) *rig {
	t.Helper()
	r := &rig{c: c, dir: dir, Runner: conntest.NewRunner(t, c, connectors.EnvConfig{Name: "ua", Type: "opcua", DataDir: dir})}
	if err := c.Start(context.Background(), r.Env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.Stop(ctx)
}

// next returns the next batch, or nil after within.
func (r *rig) next(t testing.TB, within time.Duration) *bus.Batch { return r.TryNext(t, within) }

// until reads batches until done returns true for the records seen so
// far, failing the test after within.
func (r *rig) until(t testing.TB, within time.Duration, what string, done func(bus.Record) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b := r.next(t, time.Until(deadline))
		if b == nil {
			break
		}
		for _, rec := range b.Records {
			if done(rec) {
				return
			}
		}
	}
	t.Fatalf("%s: not within %v (state %+v, stats %+v)", what, within, r.Env.State().Snapshot(), r.c.Stats())
}

// expect returns what the sim's line variable i holds at generation gen,
// as the connector must map it.
func expect(i int, gen uint64) bus.Value {
	v := simopcua.Value(i, gen)
	switch x := v.(type) {
	case time.Time:
		return bus.String(x.UTC().Format(time.RFC3339Nano))
	case float32:
		return bus.Double(float64(x))
	case float64:
		return bus.Double(x)
	case bool:
		return bus.Bool(x)
	case string:
		return bus.String(x)
	case uint64:
		return bus.Long(int64(x))
	case int8, int16, int32, int64, uint8, uint16, uint32:
		var n int64
		fmt.Sscan(fmt.Sprint(x), &n)
		return bus.Long(n)
	}
	panic(fmt.Sprintf("no expectation for %T", v))
}

// lineTag is the tag of line variable i when browsed from Plant.
func lineTag(s *simopcua.Server, i int) string {
	return strings.TrimPrefix(s.Tag(i), "Plant/")
}
