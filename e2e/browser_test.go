package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferry-gateway/ferry/admin"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/simulator"
	"github.com/ferry-gateway/ferry/examples"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/router/lvc"
	"github.com/ferry-gateway/ferry/sim/flaky"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

// TestBrowserStatusPage drives headless Chromium against the demo's status
// page: the page loads without console errors, shows every module with its
// state, its rates move, and when the test cuts the simulated WAN link the
// uplink shows down and its spool depth rises on the page. It saves
// screenshots under artifacts/ at the repository root.
func TestBrowserStatusPage(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser against the running demo")
	}
	chrome := chromium(t)
	p, link := startDemo(t)
	a := admin.New(p)
	t.Cleanup(a.Close)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)

	eventually(t, "the uplink to be up and delivering", func() bool {
		c := module(p, "cloud")
		return c.Phase == "up" && c.Out > 0
	})

	ctx := browser(t, chrome)
	console := collectConsole(ctx)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1000),
		chromedp.Navigate(srv.URL+"/"),
	); err != nil {
		t.Fatal(err)
	}

	var want []string
	for _, m := range p.Status().Modules {
		want = append(want, m.Name)
	}
	rates := map[string]map[string]bool{} // rate element → distinct texts seen
	see := func(s pageState) {
		for k, v := range s.Rates {
			if rates[k] == nil {
				rates[k] = map[string]bool{}
			}
			rates[k][v] = true
		}
		for k, v := range s.Edges {
			if rates["edge "+k] == nil {
				rates["edge "+k] = map[string]bool{}
			}
			rates["edge "+k][v] = true
		}
	}

	s := waitPage(t, ctx, "every module with its state and every edge with a rate", func(s pageState) bool {
		see(s)
		states := map[string]string{}
		for _, m := range s.Modules {
			states[m.Name] = m.State
		}
		for _, n := range want {
			if !slices.Contains([]string{"up", "connecting", "down", "starting", "retrying", "failed"}, states[n]) {
				return false
			}
		}
		if len(s.Edges) == 0 || s.Link != "link up" || s.ChartLines == 0 {
			return false
		}
		for _, v := range s.Edges {
			if _, ok := parseRate(v); !ok {
				return false
			}
		}
		return true
	})
	for _, r := range p.Status().Routes {
		if !slices.Contains(s.Routes, r.Name) {
			t.Errorf("route %s is not on the page", r.Name)
		}
	}
	if !strings.Contains(s.Summary, "up") {
		t.Errorf("summary %q", s.Summary)
	}
	// The uplink delivers before the cut.
	waitPage(t, ctx, "the uplink's delivery rate above zero", func(s pageState) bool {
		see(s)
		r, ok := parseRate(s.Rates["sink:cloud"])
		return ok && r > 0
	})

	link.SetMode(flaky.Cut)
	t.Log("link cut")
	down := waitPage(t, ctx, "the uplink to show down", func(s pageState) bool {
		see(s)
		return s.Link == "link down" && stateOf(s, "cloud") == "down"
	})
	depth := func(s pageState) int64 {
		n, err := strconv.ParseInt(strings.ReplaceAll(s.Spool, ",", ""), 10, 64)
		if err != nil {
			t.Fatalf("spool depth %q on the page: %v", s.Spool, err)
		}
		return n
	}
	first := depth(down)
	waitPage(t, ctx, "the uplink's spool depth to rise and its delivery to stop", func(s pageState) bool {
		see(s)
		r, ok := parseRate(s.Rates["sink:cloud"])
		return depth(s) > first+50 && ok && r == 0 && strings.Contains(s.Summary, "cloud is down")
	})
	shot(t, ctx, "status-page.png")

	link.SetMode(flaky.Up)
	waitPage(t, ctx, "the uplink back up", func(s pageState) bool {
		see(s)
		return s.Link == "link up"
	})

	var moved []string
	for k, seen := range rates {
		var nums int
		for v := range seen {
			if _, ok := parseRate(v); ok {
				nums++
			}
		}
		if nums >= 2 {
			moved = append(moved, k)
		}
	}
	if !slices.Contains(moved, "sink:cloud") {
		t.Errorf("the uplink's rate did not change on the page: %v", rates["sink:cloud"])
	}
	t.Logf("rates that changed over the run: %d of %d", len(moved), len(rates))

	// A phone-sized screen: one column, still every module.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	small := waitPage(t, ctx, "the page on a small screen", func(s pageState) bool { return s.Width <= 390 })
	if small.ScrollWidth > small.Width {
		t.Errorf("on a small screen the page scrolls sideways: %d px wide in a %d px window", small.ScrollWidth, small.Width)
	}
	shot(t, ctx, "status-page-small.png")

	for _, m := range console() {
		t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line+1)
	}
}

// chromium finds Debian's chromium, which ./scripts/test installs.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal("chromium not found: install Debian's chromium package (./scripts/test does), or run with -short")
	return ""
}

// startDemo runs the embedded demo in-process on free ports, with the WAN
// link left up until the test cuts it, and returns the pipeline and the link.
func startDemo(t *testing.T) (*router.Pipeline, *flaky.Proxy) {
	t.Helper()
	// Free ports are found by binding and releasing them, so another test
	// process may take one first: then the simulator fails to start, and the
	// demo is started again on other ports.
	for attempt := 1; ; attempt++ {
		p, cfg := startDemoOnce(t)
		if ready, _ := p.Ready(); ready {
			t.Cleanup(func() { stop(t, p) })
			links := cfg.Module("sim").Connector.(*simulator.Simulator).LinkSims()
			if len(links) != 1 {
				t.Fatalf("the demo has %d links, want 1", len(links))
			}
			return p, links[0]
		}
		stop(t, p)
		if attempt == 3 {
			_, failed := p.Ready()
			t.Fatalf("the demo did not start three times: %v", failed)
		}
	}
}

func startDemoOnce(t *testing.T) (*router.Pipeline, *router.Config) {
	t.Helper()
	yaml := string(examples.Demo)
	for _, port := range []string{"5020", "4840", "18830", "18831", "1883"} {
		yaml = regexp.MustCompile(`127\.0\.0\.1:`+port+`\b`).ReplaceAllString(yaml, freeAddr(t))
	}
	for old, repl := range map[string]string{
		"{after: 20s, mode: cut}": "{after: 24h, mode: cut}", // the test cuts the link itself
		`path: "-"`:               "path: console.jsonl",     // keep the console sink off stdout
	} {
		if !strings.Contains(yaml, old) {
			t.Fatalf("the demo no longer has %q; update this test", old)
		}
		yaml = strings.Replace(yaml, old, repl, 1)
	}
	cfg, err := router.Load("demo.yaml", []byte(yaml), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	p, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p, cfg
}

// browser starts headless Chromium with a fresh profile.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, so that a browser that cannot start fails here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// collectConsole gathers what the page writes to the console at level
// warning or above, and every uncaught exception; the returned func reports
// them.
func collectConsole(ctx context.Context) func() []chromedp.ConsoleMessage {
	var mu sync.Mutex
	var got []chromedp.ConsoleMessage
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				mu.Lock()
				got = append(got, m)
				mu.Unlock()
			}
		}
	}()
	return func() []chromedp.ConsoleMessage {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// pageEvent is a row of the events panel.
type pageEvent struct {
	ID     uint64 `json:"id"`
	Kind   string `json:"kind"`
	Module string `json:"module"`
	Change string `json:"change"`
	Text   string `json:"text"`
}

// pageState is what a person reads on the page, taken from its DOM.
type pageState struct {
	Modules []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"modules"`
	Routes      []string          `json:"routes"`
	Edges       map[string]string `json:"edges"`
	Rates       map[string]string `json:"rates"`
	Link        string            `json:"link"`
	Spool       string            `json:"spool"`
	Summary     string            `json:"summary"`
	ChartLines  int               `json:"chartLines"`
	Width       int               `json:"width"`
	ScrollWidth int               `json:"scrollWidth"`
	// Retry and Errors are each module card's retry line and last error,
	// where shown.
	Retry  map[string]string `json:"retry"`
	Errors map[string]string `json:"errors"`
	// Buffers are the sinks' in-memory buffer blocks, where shown.
	Buffers map[string]struct {
		Records  string `json:"records"`
		Meta     string `json:"meta"`
		Dropping string `json:"dropping"` // the "dropping records" flag, empty while hidden
		Marked   bool   `json:"marked"`   // the card is framed as dropping
	} `json:"buffers"`
	// Events are the rows of the events panel, top first.
	Events     []pageEvent `json:"events"`
	EventsLive string      `json:"eventsLive"`
}

const readPage = `(() => {
  const txt = (e) => (e ? e.textContent.trim() : "");
  const all = (s) => [...document.querySelectorAll(s)];
  return {
    modules: all("[data-module]").map((c) => ({ name: c.dataset.module, state: txt(c.querySelector("[data-field=state]")) })),
    routes: all("[data-route]").map((c) => c.dataset.route),
    edges: Object.fromEntries(all("[data-edge]").map((e) => [e.dataset.edge, txt(e)])),
    rates: Object.fromEntries(all("[data-rate]").map((e) => [e.dataset.rate, txt(e).replace(/^[a-z]+ /, "")])),
    link: txt(document.querySelector('[data-link="cloud"]')),
    spool: txt(document.querySelector('[data-module="cloud"] [data-field="spool-records"]')),
    summary: txt(document.getElementById("summary")),
    chartLines: all("#chart-rate polyline").length,
    retry: Object.fromEntries(all("[data-module]").map((c) => [c.dataset.module, txt(c.querySelector("[data-field=retry]:not([hidden])"))])),
    errors: Object.fromEntries(all("[data-module]").map((c) => [c.dataset.module, txt(c.querySelector(".error:not([hidden])"))])),
    buffers: Object.fromEntries(
      all("[data-module]")
        .filter((c) => c.querySelector("[data-field=buffer]:not([hidden])"))
        .map((c) => [c.dataset.module, {
          records: txt(c.querySelector("[data-field=buffer-records]")),
          meta: txt(c.querySelector("[data-field=buffer-meta]")),
          dropping: txt(c.querySelector("[data-field=buffer-dropping]:not([hidden])")),
          marked: c.classList.contains("dropping"),
        }])
    ),
    events: all("#events > li").map((li) => ({
      id: Number(li.dataset.eventId),
      kind: li.dataset.kind,
      module: txt(li.querySelector(".ev-module")),
      change: txt(li.querySelector("[data-field=change]")),
      text: txt(li),
    })),
    eventsLive: document.getElementById("events").getAttribute("aria-live") || "",
    width: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
  };
})()`

// waitPage reads the page until cond holds. The page changes once a second
// on its own; there is no event to wait on.
func waitPage(t *testing.T, ctx context.Context, what string, cond func(pageState) bool) pageState {
	t.Helper()
	return waitEval(t, ctx, readPage, 45*time.Second, "status-page-failed.png", what, cond)
}

// waitEval evaluates js on the page every 250 ms until cond holds of its
// result, and on timeout saves a screenshot as failShot.
func waitEval[S any](t *testing.T, ctx context.Context, js string, timeout time.Duration, failShot, what string, cond func(S) bool) S {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[S](js))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			shot(t, ctx, failShot)
			t.Fatalf("timed out waiting for %s; the page shows %+v", what, s)
		}
		<-tick.C
	}
}

func stateOf(s pageState, module string) string {
	for _, m := range s.Modules {
		if m.Name == module {
			return m.State
		}
	}
	return ""
}

// parseRate reads "12/s", "3.5/s" or "1.2k/s".
func parseRate(s string) (float64, bool) {
	s, ok := strings.CutSuffix(s, "/s")
	if !ok {
		return 0, false
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		s, mult = strings.TrimSuffix(s, "k"), 1e3
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1e6
	}
	f, err := strconv.ParseFloat(s, 64)
	return f * mult, err == nil
}

// shot saves a full-page screenshot under artifacts/ at the repository root,
// where CI picks it up.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	dir := filepath.Join("..", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}

// TestBrowserEventsAndRetrying runs a pipeline with an embedded broker
// whose port is taken and an MQTT sink without a spool whose broker is not
// there. The page must show the broker retrying with its attempt and the
// bind error, list its state change in the events panel, mark the sink's
// small buffer as dropping, and, once the port is freed, list the broker's
// way back up on top of the events it already showed.
func TestBrowserEventsAndRetrying(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	chrome := chromium(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p := pipeline(t, fmt.Sprintf(`
site: events-test
data_dir: %s
connectors:
  gen:
    type: generator
    devices: 2
    interval: 20ms
    tags: [{name: t, signal: counter}]
  out:
    type: file
    path: out.jsonl
  uplink:
    type: mqtt
    url: tcp://%s
    connect_timeout: 1s
    buffer: {max_bytes: 2KiB}
  broker:
    type: localbroker
    listeners: {tcp: %s, websocket: "off"}
    allow_anonymous: true
routes:
  - {name: all, from: gen, to: [out, uplink]}
`, t.TempDir(), freeAddr(t), taken.Addr()))
	t.Cleanup(func() { stop(t, p) })
	a := admin.New(p)
	t.Cleanup(a.Close)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)

	ctx := browser(t, chrome)
	console := collectConsole(ctx)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1000),
		chromedp.Navigate(srv.URL+"/"),
	); err != nil {
		t.Fatal(err)
	}

	retryLine := regexp.MustCompile(`^retrying \(attempt (\d+), (next try in \d+s|trying again now)\)$`)
	attempt := func(s pageState) int {
		m := retryLine.FindStringSubmatch(s.Retry["broker"])
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// hasEvent finds a state change in the events panel; its row must carry
	// the cause's full text, if one is wanted.
	hasEvent := func(s pageState, module, change, cause string) (uint64, bool) {
		for _, e := range s.Events {
			if e.Kind == "state" && e.Module == module && e.Change == change && strings.Contains(e.Text, cause) {
				return e.ID, true
			}
		}
		return 0, false
	}
	// A second attempt shows that the count moves on the page, not just
	// the first value.
	s := waitPage(t, ctx, "the broker retrying, attempt 2 or later, with its bind error and its state change in the events", func(s pageState) bool {
		_, listed := hasEvent(s, "broker", "starting → retrying", "bind: address already in use")
		return stateOf(s, "broker") == "retrying" && attempt(s) >= 2 &&
			strings.Contains(s.Errors["broker"], "address already in use") && listed
	})
	if !strings.Contains(s.Summary, "broker is retrying (attempt") {
		t.Errorf("summary %q does not name the retrying broker", s.Summary)
	}
	if s.EventsLive != "polite" {
		t.Errorf("the events list has aria-live %q, want polite", s.EventsLive)
	}
	seen := s.Events[0].ID // the newest row on the page before the port is freed
	shot(t, ctx, "status-page-retrying.png")

	waitPage(t, ctx, "the uplink's buffer full and marked as dropping", func(s pageState) bool {
		b, ok := s.Buffers["uplink"]
		return ok && b.Dropping != "" && b.Marked && regexp.MustCompile(`dropped [1-9]`).MatchString(b.Meta) &&
			strings.Contains(s.Summary, "records dropped")
	})

	taken.Close()
	t.Log("port freed")
	s = waitPage(t, ctx, "the broker up, and its way back up listed newest first", func(s pageState) bool {
		id, listed := hasEvent(s, "broker", "retrying → up", "")
		return stateOf(s, "broker") == "up" && listed && id > seen
	})
	if s.Retry["broker"] != "" {
		t.Errorf("the broker is up but its card still says %q", s.Retry["broker"])
	}
	for i := 1; i < len(s.Events); i++ {
		if s.Events[i].ID >= s.Events[i-1].ID {
			t.Fatalf("events not newest first: row %d has id %d after %d", i, s.Events[i].ID, s.Events[i-1].ID)
		}
	}
	if _, ok := s.Buffers["out"]; !ok {
		t.Errorf("the file sink without a spool shows no buffer: %+v", s.Buffers)
	}
	shot(t, ctx, "status-page-events.png")

	for _, m := range console() {
		t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line+1)
	}
}

// TestBrowserCommissioning drives the status page's commissioning parts
// against the demo: the tags view lists every demo tag with values that
// change; a write from the page changes a register in sim/modbus and shows
// "ok"; an OPC UA browse of sim/opcua gives a snippet the config loader
// (ferry validate) accepts; the events list shows the WAN link going down
// and up; the Modbus device's tags are marked stale once it stops; and at
// 390 px nothing scrolls sideways. Screenshots go to artifacts/.
func TestBrowserCommissioning(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser against the running demo")
	}
	chrome := chromium(t)
	p, link := startDemo(t)
	sim := p.Config().Module("sim").Connector.(*simulator.Simulator)
	a := admin.New(p)
	t.Cleanup(a.Close)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)

	ctx := browser(t, chrome)
	console := collectConsole(ctx)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 1000), chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	// Every tag the demo's sources produce, from the cache behind the page.
	eventually(t, "every demo source in the cache", func() bool {
		seen := map[string]bool{}
		for _, d := range p.Tags().Devices() {
			seen[d.Source] = true
		}
		return seen["plant"] && seen["press7"] && seen["line2"]
	})
	var want []string
	for _, tg := range p.Tags().Query(lvc.Query{Limit: lvc.MaxLimit}).Tags {
		want = append(want, tg.Device+"/"+tg.Tag)
	}
	values := map[string]map[string]bool{}
	waitTags(t, ctx, "every demo tag on the page, and values that change", func(s tagsState) bool {
		for k, v := range s.Rows {
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v.Value] = true
		}
		for _, k := range want {
			if _, ok := s.Rows[k]; !ok {
				return false
			}
		}
		return len(values["press-1/line1/temperature"]) >= 2 && len(values["press-7/oven/temperature"]) >= 2 &&
			len(values["line-2/line01/V00001"]) >= 2
	})
	shot(t, ctx, "commissioning-tags.png")

	// A write from the page: the setpoint (scale 0.1) reaches register 5.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#tags-body tr[data-device="press-7"][data-tag="oven/setpoint"]`)),
		chromedp.WaitVisible(chromedp.CSS("#write-form")),
		chromedp.SetValue(chromedp.CSS("#write-value"), "23.5"),
		chromedp.Click(chromedp.CSS("#write-send")),
	); err != nil {
		t.Fatal(err)
	}
	res := waitTags(t, ctx, `the write's result "ok"`, func(s tagsState) bool { return s.WriteResult != "" && s.WriteResult != "writing…" })
	if res.WriteResult != "ok" {
		t.Fatalf("write from the page: %q", res.WriteResult)
	}
	if got := sim.ModbusSims()[0].Unit(1).HoldingRegisters().Uint16(5, simmodbus.ABCD); got != 235 {
		t.Errorf("register 5 holds %d after writing 23.5 °C, want 235", got)
	}
	if !slices.ContainsFunc(p.Events(0), func(e connectors.Event) bool {
		return e.Kind == admin.EventWrite && strings.Contains(e.Message, "press-7/oven/setpoint")
	}) {
		t.Error("the write left no event")
	}
	waitTags(t, ctx, "the chart of the setpoint's recent values", func(s tagsState) bool { return s.ChartPoints >= 2 })
	shot(t, ctx, "commissioning-write.png")

	// Discovery: browse the demo's OPC UA server, open Plant and Line01,
	// pick two variables and make YAML.
	endpoint := sim.OPCUASims()[0].Endpoint()
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#ua-endpoint"), endpoint),
		chromedp.Click(chromedp.CSS("#ua-browse")),
	); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Plant", "Line01"} {
		waitTags(t, ctx, "the node "+name+" in the tree", func(s tagsState) bool { return slices.Contains(s.Nodes, name) })
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
			const row = [...document.querySelectorAll("#ua-tree .node-row")].find((r) => r.querySelector(".node-name").textContent.endsWith(%q));
			row.querySelector("button.expand").click();
			return true;
		})()`, name))); err != nil {
			t.Fatal(err)
		}
	}
	waitTags(t, ctx, "variables with values under Line01", func(s tagsState) bool { return s.Variables >= 2 })
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => {
		const boxes = [...document.querySelectorAll("#ua-tree .n-variable input[type=checkbox]")].slice(0, 2);
		for (const b of boxes) b.click();
		document.getElementById("yaml-name").value = "line1";
		document.getElementById("make-yaml").click();
		return boxes.length;
	})()`)); err != nil {
		t.Fatal(err)
	}
	snip := waitTags(t, ctx, "a YAML snippet", func(s tagsState) bool { return s.YAML != "" && s.YAMLStatus != "" })
	if !strings.HasPrefix(snip.YAMLStatus, "valid") {
		t.Fatalf("snippet status %q\n%s", snip.YAMLStatus, snip.YAML)
	}
	file := filepath.Join(t.TempDir(), "snippet.yaml")
	if err := os.WriteFile(file, []byte(snip.YAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := router.LoadFile(file); err != nil { // what ferry validate runs
		t.Fatalf("the page's snippet does not validate: %v\n%s", err, snip.YAML)
	}
	shot(t, ctx, "commissioning-discovery.png")

	// The WAN link down and up, in the events list filtered to the uplink.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#ev-search"), "cloud")); err != nil {
		t.Fatal(err)
	}
	link.SetMode(flaky.Cut)
	waitPage(t, ctx, "the uplink going down in the events", func(s pageState) bool {
		return slices.ContainsFunc(s.Events, func(e pageEvent) bool {
			return e.Module == "cloud" && strings.HasSuffix(e.Change, "→ down")
		})
	})
	link.SetMode(flaky.Up)
	waitPage(t, ctx, "the uplink coming back up in the events", func(s pageState) bool {
		return slices.ContainsFunc(s.Events, func(e pageEvent) bool {
			return e.Module == "cloud" && e.Change == "down → up"
		})
	})
	shot(t, ctx, "commissioning-events.png")

	// The Modbus device stops: its tags are marked stale.
	if err := sim.ModbusSims()[0].Close(); err != nil {
		t.Fatal(err)
	}
	waitTags(t, ctx, "the Modbus device's tags marked stale", func(s tagsState) bool {
		r, ok := s.Rows["press-7/oven/temperature"]
		return ok && r.Stale && !s.Rows["press-1/line1/temperature"].Stale
	})
	shot(t, ctx, "commissioning-stale.png")

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	small := waitTags(t, ctx, "the page on a small screen", func(s tagsState) bool { return s.Width <= 390 })
	if small.ScrollWidth > small.Width {
		t.Errorf("at 390 px the page scrolls sideways: %d px wide", small.ScrollWidth)
	}
	shot(t, ctx, "commissioning-small.png")
	for _, m := range console() {
		t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line+1)
	}
}

// tagsState is what the commissioning parts of the page show.
type tagsState struct {
	Rows map[string]struct {
		Value string `json:"value"`
		Stale bool   `json:"stale"`
	} `json:"rows"`
	WriteResult string   `json:"writeResult"`
	ChartPoints int      `json:"chartPoints"`
	Nodes       []string `json:"nodes"`
	Variables   int      `json:"variables"`
	YAML        string   `json:"yaml"`
	YAMLStatus  string   `json:"yamlStatus"`
	Width       int      `json:"width"`
	ScrollWidth int      `json:"scrollWidth"`
}

const readTags = `(() => {
  const txt = (e) => (e ? e.textContent.trim() : "");
  const line = document.querySelector("#detail-chart polyline");
  return {
    rows: Object.fromEntries([...document.querySelectorAll("#tags-body tr")].map((r) => [
      r.dataset.device + "/" + r.dataset.tag,
      { value: txt(r.querySelector("[data-field=value]")), stale: !!r.querySelector("[data-field=stale]") },
    ])),
    writeResult: txt(document.getElementById("write-result")),
    chartPoints: line ? line.getAttribute("points").split(" ").length : 0,
    nodes: [...document.querySelectorAll("#ua-tree .node-name")].map((n) => txt(n).replace(/^\d+:/, "")),
    variables: [...document.querySelectorAll("#ua-tree .n-variable [data-field=node-value]")].filter((v) => txt(v) !== "").length,
    yaml: document.getElementById("yaml-result").hidden ? "" : document.getElementById("yaml-result").textContent,
    yamlStatus: txt(document.getElementById("yaml-status")),
    width: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
  };
})()`

func waitTags(t *testing.T, ctx context.Context, what string, cond func(tagsState) bool) tagsState {
	t.Helper()
	return waitEval(t, ctx, readTags, 60*time.Second, "commissioning-failed.png", what, cond)
}
