package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
)

func run(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateOK(t *testing.T) {
	code, out, errs := run(t, t.Context(), "validate", "-c", "../../examples/demo.yaml")
	if code != 0 || out != "ok\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestValidateReportsEveryErrorWithPosition(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte(`connectors:
  gen:
    type: generator
    interval: soon
    tags: [{name: t, colour: red}]
routes:
  - from: gen
    where: value >
    to: nowhere
`), 0o600)
	code, out, _ := run(t, t.Context(), "validate", "-c", file)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	pos := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+:\d+: `)
	for _, l := range lines {
		if !pos.MatchString(l) {
			t.Errorf("line not FILE:LINE:COL: %q", l)
		}
	}
	for _, want := range []string{":4:15: connectors.gen.interval", ":5:22: connectors.gen.tags[0].colour", ":8:18: routes[0].where", ":9:9: routes[0].to"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	if code, out, _ := run(t, t.Context(), "version"); code != 0 || !strings.HasPrefix(out, "ferry ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := run(t, t.Context(), "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, _ := run(t, t.Context(), "validate"); code != 2 {
		t.Fatalf("validate without -c: %d", code)
	}
	if code, _, _ := run(t, t.Context(), "run", "--log-format", "xml"); code != 2 {
		t.Fatalf("bad log format: %d", code)
	}
}

// TestRunStopsGracefully runs a config until its file sink has data, then
// cancels as SIGTERM would, and expects exit 0.
func TestRunStopsGracefully(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	os.WriteFile(file, []byte(`connectors:
  gen: {type: generator, interval: 5ms, tags: [{name: t}]}
  out: {type: file, path: out.jsonl}
routes:
  - {from: gen, to: out}
`), 0o600)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	var stderr bytes.Buffer
	go func() {
		done <- dispatch(ctx, []string{"run", "-c", file, "--data-dir", dir, "--admin-addr", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr)
	}()
	out := filepath.Join(dir, "out.jsonl")
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := os.Stat(out); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no output in 20s; stderr:\n%s", stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("run exited early with %d:\n%s", code, stderr.String())
		case <-tick.C:
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
	if !strings.Contains(stderr.String(), "admin listening") {
		t.Errorf("admin address not logged:\n%s", stderr.String())
	}
}

func TestSpoolInspect(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(dir, "spool", "cloud")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &bus.Batch{Records: []bus.Record{{Source: "g", Tag: "t", SourceTime: 1e18, IngestTime: 1e18}, {Source: "g", Tag: "u", SourceTime: 1e18, IngestTime: 1e18}}}
	if err := sp.Publish("router/cloud", bus.NewMessage(b)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, t.Context(), "spool", "inspect", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "cloud") || !strings.Contains(out, "router/cloud") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	fields := strings.Fields(strings.Split(out, "\n")[1])
	if len(fields) < 4 || fields[3] != "2" { // SINK LANE BATCHES RECORDS…: 1 batch, 2 records
		t.Fatalf("summary line %q", strings.Split(out, "\n")[1])
	}
	if code, _, _ := run(t, t.Context(), "spool", "inspect", "--data-dir", t.TempDir()); code != 1 {
		t.Fatalf("empty data dir: exit %d", code)
	}
}

func TestPasswd(t *testing.T) {
	var out, errb bytes.Buffer
	if code := hashPassword(strings.NewReader("s3cret\n"), &out, &errb, 4); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	h := strings.TrimSpace(out.String())
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatalf("%q does not verify", h)
	}
	if code := hashPassword(strings.NewReader(""), &out, &errb, 4); code != 2 {
		t.Fatalf("empty password: exit %d", code)
	}
}

// TestReloadOverHTTPAndSIGHUP runs ferry from a file, then changes the file:
// an invalid version is refused with every error and the old pipeline keeps
// running; a valid one is applied, restarting only the changed module.
func TestReloadOverHTTPAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const base = `connectors:
  gen: {type: generator, interval: 5ms, tags: [{name: t}]}
  other: {type: generator, interval: 5ms, tags: [{name: u}]}
  out: {type: file, path: out.jsonl}
routes:
  - {from: [gen, other], to: out}
`
	write(base)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, []string{"run", "-c", file, "--data-dir", dir, "--admin-addr", addr}, io.Discard, &stderr)
	}()
	status := func() (s router.Status) {
		resp, err := http.Get("http://" + addr + "/api/status")
		if err != nil {
			return s
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&s)
		return s
	}
	waitfor.Until(t, 20*time.Second, func() bool { return len(status().Modules) > 0 },
		func() string { return "ferry did not come up:\n" + stderr.String() })
	since := map[string]time.Time{}
	for _, m := range status().Modules {
		since[m.Name] = m.Since
	}
	post := func() (int, string) {
		resp, err := http.Post("http://"+addr+"/api/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	write(base + "bogus: 1\nroutes2: []\n")
	code, body := post()
	if code != 400 || !strings.Contains(body, `ferry.yaml:7:1: bogus: unknown key`) || !strings.Contains(body, "routes2") {
		t.Fatalf("invalid reload: %d %s", code, body)
	}
	if s := status(); s.Reload == nil || s.Reload.OK || len(s.Modules) != 3 {
		t.Fatalf("status after a refused reload: %+v", s.Reload)
	}

	write(strings.Replace(base, "tags: [{name: u}]", "tags: [{name: u2}]", 1))
	code, body = post()
	if code != 200 || !strings.Contains(body, `"restarted":["other"]`) {
		t.Fatalf("valid reload: %d %s", code, body)
	}
	for _, m := range status().Modules {
		if m.Name != "other" && !m.Since.Equal(since[m.Name]) {
			t.Errorf("%s restarted although unchanged", m.Name)
		}
	}

	// SIGHUP does the same (systemctl reload).
	write(strings.Replace(base, "tags: [{name: t}]", "tags: [{name: t2}]", 1))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var s router.Status
	waitfor.Until(t, 20*time.Second, func() bool {
		s = status()
		// gen (changed) and other (back to u)
		return s.Reload != nil && s.Reload.OK && s.Reload.Result != nil && len(s.Reload.Result.Restarted) == 2
	}, func() string { return fmt.Sprintf("SIGHUP did not reload: %+v", s.Reload) })
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("exit %d:\n%s", c, stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
