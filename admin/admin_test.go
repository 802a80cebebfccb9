package admin

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	_ "github.com/ferry-gateway/ferry/connectors/all"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
)

const testConfig = `
site: test
connectors:
  gen:
    type: generator
    devices: 1
    interval: 20ms
    tags:
      - {name: a, signal: counter}
      - {name: b, signal: counter}
  other:
    type: generator
    devices: 1
    interval: 1h
    tags:
      - {name: c, signal: counter}
  out:
    type: file
    path: out.jsonl
  spooled:
    type: file
    path: spooled.jsonl
    store_and_forward: true
routes:
  - {name: all, from: gen, to: out}
  - {name: some, from: "gen/*", tags: a, to: [out, spooled]}
`

// pipeline starts testConfig; it is stopped when the test ends.
func pipeline(t *testing.T) *router.Pipeline {
	t.Helper()
	return startConfig(t, testConfig)
}

func stopPipeline(t *testing.T, p *router.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Error(err)
	}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestStatusPageAndAssets(t *testing.T) {
	a := New(pipeline(t))
	defer a.Close()
	srv := httptest.NewServer(a)
	defer srv.Close()

	for path, want := range map[string]struct{ ctype, body string }{
		"/":             {"text/html", `src="ui/app.js"`},
		"/ui/app.js":    {"text/javascript", "api/status"},
		"/ui/style.css": {"text/css", ".graph"},
	} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want.ctype) || !strings.Contains(body, want.body) {
			t.Errorf("GET %s: %d %s, body lacks %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), want.body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, _ := get(t, srv.URL+"/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
	// The old routes are still there.
	for _, path := range []string{"/healthz", "/metrics", "/api/status", "/api/events"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
}

// TestPageIsSelfContained checks that every asset the page names is
// embedded and that nothing is fetched from another host.
func TestPageIsSelfContained(t *testing.T) {
	index, err := fs.ReadFile(ui, "ui/index.html")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`(?:src|href)="(ui/[^"]+)"`).FindAllStringSubmatch(string(index), -1)
	if len(refs) < 2 {
		t.Fatalf("index.html names %d assets", len(refs))
	}
	for _, r := range refs {
		if _, err := fs.Stat(ui, r[1]); err != nil {
			t.Errorf("index.html names %s: %v", r[1], err)
		}
	}
	url := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"')]*`)
	err = fs.WalkDir(ui, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(ui, path)
		if err != nil {
			return err
		}
		for _, u := range url.FindAllString(string(b), -1) {
			if !strings.Contains(u, "www.w3.org/2000/svg") { // the SVG namespace, not a fetch
				t.Errorf("%s refers to %s", path, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGraph(t *testing.T) {
	srv := httptest.NewServer(Handler(pipeline(t)))
	defer srv.Close()
	_, body := get(t, srv.URL+"/api/graph")
	var g Graph
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatal(err)
	}
	want := Graph{
		Sources:  []string{"gen", "other"},
		Sinks:    []string{"out", "spooled"},
		Services: []string{},
		Routes: []GraphRoute{
			{Name: "all", From: []string{"gen"}, To: []string{"out"}},
			{Name: "some", From: []string{"gen"}, To: []string{"out", "spooled"}},
		},
	}
	gj, _ := json.Marshal(g)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("graph\n got %s\nwant %s", gj, wj)
	}
}

// TestHistory samples a running pipeline quickly and checks that
// /api/history has the counters growing, oldest first.
func TestHistory(t *testing.T) {
	p := pipeline(t)
	a := newAdmin(p, 10*time.Millisecond, 50)
	defer a.Close()
	srv := httptest.NewServer(a)
	defer srv.Close()

	var h History
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // sampling has no event to wait on
	defer tick.Stop()
	for {
		_, body := get(t, srv.URL+"/api/history")
		h = History{}
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatal(err)
		}
		if len(h.Samples) == 50 && h.Samples[len(h.Samples)-1].Out[0] > h.Samples[0].Out[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history did not fill: %d samples", len(h.Samples))
		}
		<-tick.C
	}
	if !slices.Equal(h.Modules, []string{"gen", "other", "out", "spooled"}) || !slices.Equal(h.Spools, []string{"spooled"}) {
		t.Errorf("columns: modules %v, spools %v", h.Modules, h.Spools)
	}
	for i, s := range h.Samples {
		if len(s.In) != 4 || len(s.Out) != 4 || len(s.Spool) != 1 {
			t.Fatalf("sample %d: %+v", i, s)
		}
		if i > 0 && (s.T < h.Samples[i-1].T || s.Out[0] < h.Samples[i-1].Out[0]) {
			t.Fatalf("samples out of order at %d: %+v after %+v", i, s, h.Samples[i-1])
		}
	}
}

// TestSamplerEndsWithPipeline: Handler has no Close, so its sampler must end
// by itself once the pipeline stopped.
func TestSamplerEndsWithPipeline(t *testing.T) {
	cfg, err := router.Load("admin.yaml", []byte(testConfig), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	p, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newAdmin(p, 5*time.Millisecond, 10) // before Start, as ferry run does
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The sampler notices a stop only once it has seen the pipeline run.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(a.hist.snapshot().Samples) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sampler took no sample of the running pipeline")
		}
		<-tick.C
	}
	stopPipeline(t, p)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sampler still runs after the pipeline stopped")
	}
}

func TestHistoryRing(t *testing.T) {
	h := newHistory(3, time.Second)
	status := func(n uint64, mods ...string) router.Status {
		var st router.Status
		for _, m := range mods {
			ms := router.ModuleStatus{Name: m}
			ms.Out = n
			if m == "sink" {
				ms.Spool = &router.SpoolStatus{Records: int64(n)}
			}
			st.Modules = append(st.Modules, ms)
		}
		return st
	}
	t0 := time.UnixMilli(1_000_000)
	if got := h.snapshot(); len(got.Samples) != 0 || got.Modules == nil {
		t.Fatalf("empty history: %+v", got)
	}
	for i := range 5 {
		h.add(t0.Add(time.Duration(i)*time.Second), status(uint64(i), "src", "sink"))
	}
	got := h.snapshot()
	var outs []uint64
	for _, s := range got.Samples {
		outs = append(outs, s.Out[0])
	}
	if !slices.Equal(outs, []uint64{2, 3, 4}) || got.Samples[0].T != 1_002_000 || got.Samples[2].Spool[0] != 4 {
		t.Fatalf("after 5 adds to a ring of 3: %+v", got)
	}
	// A reload changes the modules: the old columns are dropped.
	h.add(t0.Add(10*time.Second), status(7, "src", "new"))
	got = h.snapshot()
	if len(got.Samples) != 1 || !slices.Equal(got.Modules, []string{"src", "new"}) || len(got.Spools) != 0 {
		t.Fatalf("after the modules changed: %+v", got)
	}
}

func events(t *testing.T, url string) []connectors.Event {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s: %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !strings.HasPrefix(strings.TrimSpace(body), "[") {
		t.Fatalf("GET %s: not a JSON array: %s", url, body)
	}
	var evs []connectors.Event
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID <= evs[i-1].ID {
			t.Fatalf("GET %s: ids not increasing: %d after %d", url, evs[i].ID, evs[i-1].ID)
		}
	}
	return evs
}

// TestEvents: /api/events lists what happened oldest first, ?after= gives
// only what is newer (how the page polls), and a bad after is refused with
// a message that says what is wanted.
func TestEvents(t *testing.T) {
	p := pipeline(t)
	srv := httptest.NewServer(Handler(p))
	defer srv.Close()

	// Every module of testConfig comes up once; the file sinks and
	// generators have no link to make, so the events are there by now, but
	// poll in case one is still on its way.
	var all []connectors.Event
	up := map[string]bool{}
	waitfor.Until(t, 10*time.Second, func() bool {
		all = events(t, srv.URL+"/api/events")
		clear(up)
		for _, e := range all {
			if e.Kind == connectors.EventState && e.To == connectors.PhaseUp {
				up[e.Module] = true
			}
		}
		return len(up) == 4
	}, waitfor.Say("every module's state change to up in /api/events"))
	for _, e := range all {
		if e.Time.IsZero() || e.Message == "" || e.ID == 0 {
			t.Errorf("event lacks its id, time or message: %+v", e)
		}
	}

	last := all[len(all)-1].ID
	if got := events(t, srv.URL+"/api/events?after="+strconv.FormatUint(last, 10)); len(got) != 0 {
		t.Errorf("after the newest id: %+v, want none", got)
	}
	if got := events(t, srv.URL+"/api/events?after="+strconv.FormatUint(all[0].ID, 10)); len(got) != len(all)-1 || got[0].ID != all[1].ID {
		t.Errorf("after the oldest id: %d events starting at %d, want %d starting at %d", len(got), got[0].ID, len(all)-1, all[1].ID)
	}
	if got := events(t, srv.URL+"/api/events?after=0"); len(got) != len(all) {
		t.Errorf("after=0: %d events, want every one kept (%d)", len(got), len(all))
	}

	// A reload is one new event; a poller that passes its last id sees
	// it, and nothing it had already.
	cfg, err := router.Load("admin.yaml", []byte(testConfig), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = p.Config().DataDir
	if _, err := p.Reload(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	newer := events(t, srv.URL+"/api/events?after="+strconv.FormatUint(last, 10))
	if len(newer) == 0 || newer[0].ID != last+1 {
		t.Fatalf("after a reload, events after %d: %+v", last, newer)
	}
	if !slices.ContainsFunc(newer, func(e connectors.Event) bool { return e.Kind == connectors.EventReload }) {
		t.Errorf("no reload event after %d: %+v", last, newer)
	}

	for _, bad := range []string{"x", "-1", "", "1.5", "18446744073709551616"} {
		resp, body := get(t, srv.URL+"/api/events?after="+bad)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "after") || !strings.Contains(body, "whole number") {
			t.Errorf("after=%q: %d %q, want 400 saying what after must be", bad, resp.StatusCode, body)
		}
	}
}
