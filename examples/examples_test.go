package examples_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/admin"
	_ "github.com/ferry-gateway/ferry/connectors/all"
	"github.com/ferry-gateway/ferry/connectors/simulator"
	"github.com/ferry-gateway/ferry/examples"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
)

func TestEveryExampleValidates(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		if _, err := router.LoadFile(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
	disk, _ := os.ReadFile("demo.yaml")
	if string(disk) != string(examples.Demo) {
		t.Fatal("embedded demo differs from demo.yaml")
	}
}

// freePorts rewrites the demo's fixed loopback ports to free ones, so the
// test never collides with a demo (or anything else) already running.
func freePorts(t *testing.T, yaml string) string {
	t.Helper()
	for _, port := range []string{"5020", "4840", "18830", "18831", "1883"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		free := ln.Addr().String()
		ln.Close()
		yaml = regexp.MustCompile(`127\.0\.0\.1:`+port+`\b`).ReplaceAllString(yaml, free)
	}
	return yaml
}

// TestDemoRuns runs the embedded demo until records have reached its sinks
// and the simulated cloud, and checks the admin endpoint shows them.
func TestDemoRuns(t *testing.T) {
	// The console sink writes to stdout; keep test output clean.
	stdout := os.Stdout
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = devnull
	defer func() { os.Stdout = stdout; devnull.Close() }()

	// Free ports are found by binding and releasing them, so another test
	// process may take one first: then a module fails to start, and the demo
	// is started again on other ports.
	var p *router.Pipeline
	var cfg *router.Config
	for attempt := 1; ; attempt++ {
		var err error
		cfg, err = router.Load("demo.yaml", []byte(freePorts(t, string(examples.Demo))), conf.Resolver{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = t.TempDir()
		p, err = router.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		ready, failed := p.Ready()
		if ready {
			break
		}
		stopDemo(t, p)
		if attempt == 3 {
			t.Fatalf("the demo did not start three times: %v", failed)
		}
	}
	defer stopDemo(t, p)
	srv := httptest.NewServer(admin.Handler(p))
	defer srv.Close()

	const want = 100
	waitfor.Until(t, 30*time.Second, func() bool { return archived(p) >= want },
		func() string { return fmt.Sprintf("only %d records archived; status %+v", archived(p), p.Status()) })
	for path, contains := range map[string]string{
		"/healthz":    "ok",
		"/readyz":     "ok",
		"/metrics":    `ferry_records_out_total{module="archive"}`,
		"/api/status": `"name": "archive-all"`,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), contains) {
			t.Errorf("GET %s: %d, body lacks %q:\n%.400s", path, resp.StatusCode, contains, body)
		}
	}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, "demo", "records.jsonl"))
	if err != nil || strings.Count(string(data), "\n") < want {
		t.Fatalf("archive file: %d lines, %v", strings.Count(string(data), "\n"), err)
	}
	sim := cfg.Module("sim").Connector.(*simulator.Simulator)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rep, err := sim.CloudSim().Wait(ctx, func(r cloud.Report) bool { return r.Unique >= want })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing() != 0 {
		t.Fatalf("the cloud misses records: %+v", rep)
	}
}

func stopDemo(t *testing.T, p *router.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Error(err)
	}
}

func archived(p *router.Pipeline) uint64 {
	for _, m := range p.Status().Modules {
		if m.Name == "archive" {
			return m.Out
		}
	}
	return 0
}

// Every series the Grafana dashboard queries must be one ferry exports.
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	err = filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, _ := os.ReadFile(path)
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`ferry_[a-z_]+`).FindAllString(string(data), -1)
	if len(names) < 10 {
		t.Fatalf("only %d ferry series in the dashboard", len(names))
	}
	for _, n := range names {
		if !strings.Contains(src.String(), `"`+n+`"`) {
			t.Errorf("dashboard queries %s, which no code registers", n)
		}
	}
}
