package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/examples"
)

// TestHelpPrintsTheCommandsFlags: `ferry help run` is run's flags, not the
// general usage, on stdout with exit 0.
func TestHelpPrintsTheCommandsFlags(t *testing.T) {
	code, out, errs := run(t, t.Context(), "help", "run")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"usage: ferry run", "-c, --config FILE", "--data-dir", "--admin-addr", "--log-level", "--demo-port-offset"} {
		if !strings.Contains(out, want) {
			t.Errorf("help run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Commands:") {
		t.Errorf("help run printed the general usage:\n%s", out)
	}
}

// subcommands are every command line that has flags of its own.
var subcommands = [][]string{
	{"run"}, {"validate"}, {"test"}, {"plan"}, {"browse"}, {"trust"}, {"trust", "list"}, {"trust", "accept"}, {"scan"}, {"scan", "modbus"}, {"sim"}, {"sim", "modbus"}, {"sim", "opcua"},
	{"spool"}, {"spool", "inspect"}, {"spool", "verify"}, {"deadletter"}, {"deadletter", "list"}, {"deadletter", "replay"}, {"import"}, {"import", "modbus-csv"}, {"passwd"}, {"version"},
}

// TestHelpExitsZeroEverywhere: --help, -h and `ferry help ...` exit 0 with
// the help on stdout, for every command and subcommand.
func TestHelpExitsZeroEverywhere(t *testing.T) {
	for _, c := range commands {
		if c.run != nil && !slices.ContainsFunc(subcommands, func(s []string) bool { return s[0] == c.name }) {
			t.Errorf("command %s is missing from this test", c.name)
		}
	}
	for _, sub := range subcommands {
		for _, args := range [][]string{
			append(slices.Clone(sub), "--help"),
			append(slices.Clone(sub), "-h"),
			append([]string{"help"}, sub...),
		} {
			code, out, errs := run(t, t.Context(), args...)
			if code != 0 || !strings.Contains(strings.ToLower(out), "usage") || errs != "" {
				t.Errorf("ferry %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errs)
			}
		}
	}
}

func TestVersionForms(t *testing.T) {
	_, want, _ := run(t, t.Context(), "version")
	if !strings.HasPrefix(want, "ferry ") {
		t.Fatalf("version: %q", want)
	}
	for _, flag := range []string{"--version", "-v", "-version"} {
		if code, out, _ := run(t, t.Context(), flag); code != 0 || out != want {
			t.Errorf("ferry %s: exit %d %q, want %q", flag, code, out, want)
		}
	}
}

func TestVersionString(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	got := versionString(bi)
	want := regexp.MustCompile(`^ferry v1\.2\.3 revision 0123456789abcdef0123456789abcdef01234567 \(2026-12-01T10:00:00Z\) modified go1\.26\.8 \w+/\w+$`)
	if !want.MatchString(got) {
		t.Errorf("got %q", got)
	}
	if got := versionString(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); !strings.HasPrefix(got, "ferry devel (no VCS revision in the build)") {
		t.Errorf("without VCS: %q", got)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binVCS  bool
	binHead string // git's HEAD when the binary was built
)

// ferryBinary builds ferry once per test run, with VCS stamping on when the
// tree is a git checkout (the machine's GOFLAGS may turn it off).
func ferryBinary(t *testing.T) (string, bool) {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ferry")
		if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			binHead = strings.TrimSpace(string(head))
		}
		out, err := exec.Command("go", "build", "-buildvcs=true", "-o", binPath, ".").CombinedOutput()
		if err == nil {
			binVCS = true
			return
		}
		out2, err := exec.Command("go", "build", "-buildvcs=false", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out) + string(out2))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath, binVCS
}

// TestVersionFromBuildInfo: a built binary names the commit it was built
// from.
func TestVersionFromBuildInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry")
	}
	bin, vcs := ferryBinary(t)
	if !vcs {
		t.Skip("not a git checkout: no VCS revision to check")
	}
	if binHead == "" {
		t.Skip("git rev-parse HEAD failed")
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "revision "+binHead+" (") {
		t.Errorf("version %q does not name HEAD %s with its time", out, binHead)
	}
}

// TestConfigForms: -c, --config, --config= and the positional form all name
// the config, for every command that reads one.
func TestConfigForms(t *testing.T) {
	const demo = "../../examples/demo.yaml"
	for _, args := range [][]string{
		{"validate", demo}, {"validate", "-c", demo}, {"validate", "--config", demo}, {"validate", "--config=" + demo},
		{"validate", demo, "-v"}, {"plan", demo}, {"plan", "--config", demo},
	} {
		if code, out, errs := run(t, t.Context(), args...); code != 0 {
			t.Errorf("ferry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	for _, args := range [][]string{{"validate"}, {"validate", "a.yaml", "b.yaml"}, {"validate", "-c", "a.yaml", "b.yaml"}, {"plan"}} {
		if code, _, errs := run(t, t.Context(), args...); code != 2 || errs == "" {
			t.Errorf("ferry %s: exit %d, stderr %q; want 2 with why", strings.Join(args, " "), code, errs)
		}
	}
	// run takes --config too: a missing file fails the run (1), it is not
	// taken for the demo.
	if code, _, errs := run(t, t.Context(), "run", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 1 || !strings.Contains(errs, "none.yaml") {
		t.Errorf("run --config missing: exit %d %q", code, errs)
	}
}

// TestUsage: the top-level usage lists every command in one aligned column
// and the global flags, and the global log flags reach the command.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		code, out, _ := run(t, t.Context(), args...)
		if code != 0 {
			t.Fatalf("ferry %v: exit %d", args, code)
		}
		for _, want := range []string{"--log-level LEVEL", "--log-format FORMAT", "-v, --version", "-h, --help"} {
			if !strings.Contains(out, want) {
				t.Errorf("usage lacks %q", want)
			}
		}
		col := -1
		for _, c := range commands {
			i := strings.Index(out, "\n  "+c.name+" ")
			if i < 0 {
				t.Fatalf("usage lacks command %s:\n%s", c.name, out)
			}
			line := out[i+1:]
			line = line[:strings.IndexByte(line, '\n')]
			at := strings.Index(line, c.summary)
			if col >= 0 && at != col {
				t.Errorf("summary of %s at column %d, others at %d:\n%s", c.name, at, col, out)
			}
			col = at
		}
	}
	if code, _, errs := run(t, t.Context(), "--log-format", "xml", "run"); code != 2 || !strings.Contains(errs, "xml") {
		t.Errorf("global --log-format xml run: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, t.Context(), "--log-level=debug", "validate", "x.yaml"); code != 2 || !strings.Contains(errs, "does not apply") {
		t.Errorf("global --log-level for validate: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, t.Context(), "--frobnicate"); code != 2 || !strings.Contains(errs, "unknown flag") {
		t.Errorf("unknown global flag: exit %d %q", code, errs)
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	for typed, want := range map[string]string{"valdate": "validate", "rn": "run", "spol": "spool", "verison": "version", "brwose": "browse", "val": "validate"} {
		code, _, errs := run(t, t.Context(), typed)
		if code != 2 || !strings.Contains(errs, `did you mean "`+want+`"?`) {
			t.Errorf("ferry %s: exit %d %q, want a hint %q", typed, code, errs, want)
		}
	}
	if _, _, errs := run(t, t.Context(), "xyzzy"); strings.Contains(errs, "did you mean") {
		t.Errorf("a hint for nothing near: %q", errs)
	}
}

// readmeBlock returns the first fenced block of lang after heading in the
// README.
func readmeBlock(t *testing.T, readme, heading, lang string) string {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	rest := readme[i:]
	j := strings.Index(rest, "\n```"+lang+"\n")
	if j < 0 {
		t.Fatalf("no ```%s block after %q", lang, heading)
	}
	rest = rest[j+len("\n```"+lang+"\n"):]
	return rest[:strings.Index(rest, "```\n")]
}

// TestReadmeCommandLine holds the README to the CLI: its command list names
// every command and no other, each flag it shows is one the command takes,
// the package table lists the commands, and the README runs ferry one way.
func TestReadmeCommandLine(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	block := readmeBlock(t, readme, "## Command line", "")
	seen := map[string]bool{}
	flagRe := regexp.MustCompile(`(?:^|[\s\[|])(--?[a-z][a-z-]*)`)
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "ferry" {
			t.Fatalf("not a ferry command line: %q", line)
		}
		seen[f[1]] = true
		c, ok := lookup(f[1])
		if !ok {
			t.Errorf("README lists %q, which ferry does not have", f[1])
			continue
		}
		if c.run == nil {
			continue
		}
		help := []string{"help", f[1]}
		if len(f) > 2 && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(f[2]) {
			help = append(help, f[2])
		}
		_, out, _ := run(t, t.Context(), help...)
		for _, m := range flagRe.FindAllStringSubmatch(line, -1) {
			name := strings.TrimLeft(m[1], "-")
			if !regexp.MustCompile(`(^|\s|, )--?` + regexp.QuoteMeta(name) + `\b`).MatchString(out) {
				t.Errorf("README shows %s for %q, which `ferry %s` does not list:\n%s", m[1], strings.Join(help[1:], " "), strings.Join(help, " "), out)
			}
		}
	}
	for _, c := range commands {
		if !seen[c.name] {
			t.Errorf("README's command list lacks %q", c.name)
		}
		if !strings.Contains(readme, "| `cmd/ferry` |") || !regexp.MustCompile("\\| `cmd/ferry` \\|[^\n]*`"+c.name+"`").MatchString(readme) {
			t.Errorf("package table's cmd/ferry row lacks %q", c.name)
		}
	}
	if strings.Contains(readme, "go run ./cmd/ferry") {
		t.Error("README runs ferry with go run somewhere: use the installed ferry everywhere")
	}
}

// TestReadmeDemoLink holds the README's description of the demo's WAN link
// to the demo's schedule.
func TestReadmeDemoLink(t *testing.T) {
	b, _ := os.ReadFile("../../README.md")
	m := regexp.MustCompile(`schedule:\s*\n\s*- \{after: (\d+)s, mode: cut\}\s*\n\s*- \{after: (\d+)s, mode: up\}`).FindStringSubmatch(string(examples.Demo))
	if m == nil {
		t.Fatal("demo.yaml's link schedule is not {after: Ns, mode: cut}, {after: Ns, mode: up}")
	}
	want := "is up for " + m[1] + " s, then cut for " + m[2] + " s"
	if !strings.Contains(strings.Join(strings.Fields(string(b)), " "), want) {
		t.Errorf("README does not say the WAN link %q", want)
	}
	var places strings.Builder
	printDemoPlaces(&places, 0, "", "data")
	if want := "(up " + m[1] + " s, cut " + m[2] + " s)"; !strings.Contains(places.String(), want) {
		t.Errorf("the demo's banner does not say %q:\n%s", want, places.String())
	}
}

// TestDemoPortsMatchTheDemo: the ports the demo checks before it starts are
// exactly the ports of examples/demo.yaml.
func TestDemoPortsMatchTheDemo(t *testing.T) {
	inYAML := map[int]bool{}
	for _, m := range demoAddr.FindAllSubmatch(examples.Demo, -1) {
		p, _ := strconv.Atoi(string(m[1]))
		inYAML[p] = true
	}
	for _, p := range demoPorts {
		if !inYAML[p.port] {
			t.Errorf("port %d (%s) is not in demo.yaml", p.port, p.what)
		}
		delete(inYAML, p.port)
	}
	for p := range inYAML {
		t.Errorf("demo.yaml uses port %d, which the port check does not know", p)
	}
	moved, err := offsetDemo(examples.Demo, 100)
	if err != nil || !strings.Contains(string(moved), "tcp://127.0.0.1:5120") || strings.Contains(string(moved), "127.0.0.1:5020") {
		t.Errorf("offset 100: %v", err)
	}
	if _, err := offsetDemo(examples.Demo, 60000); err == nil {
		t.Error("an offset past port 65535 was accepted")
	}
}

// TestDemoStopsOnATakenPort takes the demo's Modbus port (moved to a free
// one with the offset) and expects the demo to stop at once, naming it and
// the way to move.
func TestDemoStopsOnATakenPort(t *testing.T) {
	var ln net.Listener
	var offset int
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		offset = l.Addr().(*net.TCPAddr).Port - 5020
		if 18831+offset <= 65535 {
			ln = l
			break
		}
		l.Close()
	}
	if ln == nil {
		t.Skip("no free port low enough to offset the demo to")
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	code, _, errs := run(t, ctx, "run", "--demo-port-offset", strconv.Itoa(offset), "--data-dir", t.TempDir(), "--admin-addr", "off")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, errs)
	}
	for _, want := range []string{ln.Addr().String() + " (the simulated Modbus device)", "--demo-port-offset " + strconv.Itoa(offset+100), "--data-dir"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if code, _, errs := run(t, ctx, "run", "-c", "../../examples/demo.yaml", "--demo-port-offset", "1"); code != 2 || !strings.Contains(errs, "demo only") {
		t.Errorf("--demo-port-offset with -c: exit %d %q", code, errs)
	}
}

// TestReloadIsPostOnly: GET /api/reload answers 405 with Allow: POST.
func TestReloadIsPostOnly(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(file, []byte("connectors:\n  gen: {type: generator, interval: 1s, tags: [{name: t}]}\n  out: {type: file, path: out.jsonl}\nroutes:\n  - {from: gen, to: out}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, []string{"run", "-c", file, "--data-dir", dir, "--admin-addr", addr}, &syncBuffer{}, &stderr)
	}()
	defer func() { cancel(); <-done }()
	var resp *http.Response
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		resp, err = http.Get("http://" + addr + "/api/reload")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin endpoint never answered: %v\n%s", err, stderr.String())
		}
		select {
		case <-done:
			t.Fatalf("ferry exited:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /api/reload: %d, Allow %q; want 405, POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestFirstConfig runs the README's "Your first config" as written: its
// YAML saved as first-config.yaml, its commands in bash, against a
// mosquitto on 127.0.0.1:1883. The fixed ports are those the README shows,
// so it runs in a network namespace of its own (root, as in CI).
func TestFirstConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry and runs mosquitto")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	yaml := readmeBlock(t, string(b), "### Your first config", "yaml")
	script := readmeBlock(t, string(b), "### Your first config", "sh")
	disk, _ := os.ReadFile("../../examples/first-config.yaml")
	if string(disk) != yaml {
		t.Error("README's first config differs from examples/first-config.yaml")
	}
	broker, err := exec.LookPath("mosquitto")
	if err != nil {
		broker = "/usr/sbin/mosquitto"
	}
	for _, need := range []string{broker, "unshare", "ip", "mosquitto_sub"} {
		if _, err := exec.LookPath(need); err != nil {
			t.Skipf("%s not installed (./scripts/test installs it)", need)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace of its own")
	}
	bin, _ := ferryBinary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "first-config.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The broker is the README's prerequisite; the commands are the
	// README's, unchanged.
	prelude := "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\nip link set lo up\n" + broker + " -p 1883 >broker.log 2>&1 &\n" +
		"for i in $(seq 200); do (echo > /dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.05; done\n"
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "bash", "-c", prelude+script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	// What the script left running in the background ends with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("the README's commands failed: %v\n%s", err, out)
	}
	text := string(out)
	if !regexp.MustCompile(`(?m)^ok$`).MatchString(text) {
		t.Errorf("validate did not print ok:\n%s", text)
	}
	readings := regexp.MustCompile(`(?m)^plant/press-1/[a-z/]+ \{"source":"press","device":"press-1".*"value":[-0-9.]+`).FindAllString(text, -1)
	if len(readings) != 3 {
		t.Errorf("want 3 readings on plant/press-1/…, got %d:\n%s", len(readings), text)
	}
}
