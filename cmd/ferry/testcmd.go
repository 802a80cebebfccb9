package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router"
)

// testCmd starts a config's sources alone, with nothing routed and nothing
// published, prints what they read, and ends with a summary per device:
// what an integrator runs before deploying a config. It exits 1 when a
// source could not start or a device never answered (no record that is
// not BAD).
func testCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("test", stderr)
	file := configFlag(fs, "config `file` (or give it as the argument)")
	module := fs.String("module", "", "only this source `module`")
	dur := fs.Duration("for", 5*time.Second, "how long to read")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if code, ok := parseConfigArgs(fs, file, args); !ok {
		return code
	}
	cfg, ok := loadOrReport(*file, stderr)
	if !ok {
		return 1
	}
	var mods []*router.Module
	for _, m := range cfg.Modules {
		if len(m.Outputs()) == 0 || *module != "" && m.Name != *module {
			continue
		}
		mods = append(mods, m)
	}
	if len(mods) == 0 {
		if *module != "" {
			fmt.Fprintf(stderr, "ferry test: %s has no source named %s\n", *file, *module)
		} else {
			fmt.Fprintf(stderr, "ferry test: %s has no source\n", *file)
		}
		return 2
	}
	// A data dir of its own: the sequence numbers and learned limits of
	// the gateway that runs this config stay as they are.
	dataDir, err := os.MkdirTemp("", "ferry-test-")
	if err != nil {
		fmt.Fprintln(stderr, "ferry test:", err)
		return 1
	}
	defer os.RemoveAll(dataDir)

	t := &tester{out: stdout, json: *asJSON, devices: map[[2]string]*devCount{}}
	if !t.json {
		t.tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t.tw, "TIME\tSOURCE\tDEVICE\tTAG\tVALUE\tTYPE\tQUALITY\tSTATUS")
	}
	runCtx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	var (
		envs    = map[string]*connectors.Env{}
		started []*router.Module
		failed  []string
		wg      sync.WaitGroup
	)
	memBus := bus.NewMemory(nil)
	defer memBus.Close()
	for _, m := range mods {
		// Subscribed before the start: the memory bus drops what nobody
		// listens to.
		for _, o := range m.Outputs() {
			msgs, err := memBus.Subscribe(runCtx, connectors.Topic(m.Name, o))
			if err != nil {
				fmt.Fprintln(stderr, "ferry test:", err)
				return 1
			}
			wg.Go(func() { t.consume(msgs) })
		}
		env, err := connectors.NewEnv(connectors.EnvConfig{
			Name: m.Name, Type: m.Type, Site: cfg.Site, DataDir: dataDir, Outputs: m.Outputs(), Publisher: memBus,
		})
		if err != nil {
			fmt.Fprintln(stderr, "ferry test:", err)
			return 1
		}
		envs[m.Name] = env
		if err := m.Connector.Start(runCtx, env); err != nil {
			failed = append(failed, m.Name)
			fmt.Fprintf(stderr, "ferry test: %s did not start: %v\n", m.Name, err)
			continue
		}
		started = append(started, m)
	}
	<-runCtx.Done()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	for _, m := range started {
		if err := m.Connector.Stop(stopCtx); err != nil {
			fmt.Fprintf(stderr, "ferry test: stop %s: %v\n", m.Name, err)
		}
	}
	_ = memBus.Close()
	wg.Wait()
	if t.tw != nil {
		_ = t.tw.Flush()
	}
	return t.summary(stdout, stderr, mods, envs, failed)
}

type devCount struct {
	source, device string
	records, bad   int
}

type tester struct {
	mu      sync.Mutex
	out     io.Writer
	tw      *tabwriter.Writer
	json    bool
	devices map[[2]string]*devCount
	dec     bus.Decoder
}

// testLine is one record of --json.
type testLine struct {
	TS      time.Time `json:"ts"`
	Source  string    `json:"source"`
	Device  string    `json:"device"`
	Tag     string    `json:"tag"`
	Value   string    `json:"value"`
	Type    string    `json:"type"`
	Quality string    `json:"quality"`
	Status  uint32    `json:"status,omitempty"`
	Unit    string    `json:"unit,omitempty"`
}

func (t *tester) consume(msgs <-chan *message.Message) {
	for m := range msgs {
		t.mu.Lock()
		var b bus.Batch
		if err := t.dec.DecodeMessage(m, &b); err == nil {
			for i := range b.Records {
				t.print(&b.Records[i])
			}
		}
		t.mu.Unlock()
		m.Ack()
	}
}

func (t *tester) print(r *bus.Record) {
	k := [2]string{r.Source, r.Device}
	d := t.devices[k]
	if d == nil {
		d = &devCount{source: r.Source, device: r.Device}
		t.devices[k] = d
	}
	d.records++
	if r.Quality == bus.Bad {
		d.bad++
	}
	val := r.Value.String()
	if r.Unit != "" {
		val += " " + r.Unit
	}
	if t.json {
		b, _ := json.Marshal(testLine{TS: r.Time().UTC(), Source: r.Source, Device: r.Device, Tag: r.Tag, Value: r.Value.String(),
			Type: r.Value.Kind.String(), Quality: r.Quality.String(), Status: r.Status, Unit: r.Unit})
		fmt.Fprintln(t.out, string(b))
		return
	}
	status := ""
	if r.Status != 0 {
		status = fmt.Sprintf("0x%X", r.Status)
	}
	fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time().Format("15:04:05.000"), r.Source, r.Device, r.Tag, val, r.Value.Kind, r.Quality, status)
}

// summary prints records and BAD per device, then each module's errors
// (the runtime counts them per module), and decides the exit code.
func (t *tester) summary(stdout, stderr io.Writer, mods []*router.Module, envs map[string]*connectors.Env, failed []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	devs := make([]*devCount, 0, len(t.devices))
	for _, d := range t.devices {
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b *devCount) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.device, b.device))
	})
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDEVICE\tRECORDS\tBAD")
	code := 0
	if len(failed) > 0 {
		code = 1
	}
	var silent, errs []string
	for _, m := range mods {
		snap := envs[m.Name].State().Snapshot()
		seen := false
		for _, d := range devs {
			if d.source != m.Name && !strings.HasPrefix(d.source, m.Name+"@") {
				continue
			}
			seen = true
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", m.Name, d.device, d.records, d.bad)
			if d.bad == d.records {
				silent = append(silent, m.Name+"/"+d.device)
			}
		}
		if !seen {
			fmt.Fprintf(tw, "%s\t-\t0\t0\n", m.Name)
			silent = append(silent, m.Name)
		}
		if snap.Errors > 0 {
			errs = append(errs, fmt.Sprintf("%s: %d errors, the last: %s", m.Name, snap.Errors, snap.LastError))
		}
	}
	_ = tw.Flush()
	for _, e := range errs {
		fmt.Fprintln(stdout, e)
	}
	if len(silent) > 0 {
		fmt.Fprintf(stderr, "ferry test: never answered: %s\n", strings.Join(silent, ", "))
		code = 1
	}
	return code
}
