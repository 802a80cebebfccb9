package router

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	// A fixed set of connectors, so golden messages listing the registered
	// types do not change whenever a connector is added: the built-in ones,
	// modbus for checks of a device's section, and mqtt for an uplink.
	_ "github.com/ferry-gateway/ferry/connectors/file"
	"github.com/ferry-gateway/ferry/connectors/generator"
	_ "github.com/ferry-gateway/ferry/connectors/modbus"
	_ "github.com/ferry-gateway/ferry/connectors/mqtt"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// issuePrefix is how regression cases start: issue_15_ok_warnings loads.
var issuePrefix = regexp.MustCompile(`^issue_\d+_`)

var update = flag.Bool("update", false, "rewrite the golden validate.err and validate.warn files")

// TestValidateGolden loads every testdata/<case>/ferry.yaml and compares the
// errors with validate.err (empty or missing: the config must load), and
// the warnings of a config that loads with validate.warn (missing: none).
func TestValidateGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/ferry.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, file := range cases {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file, data, conf.Resolver{Env: func(string) (string, bool) { return "", false }})
			checkGolden(t, filepath.Join(dir, "validate.warn"), warnings(cfg))
			got := ""
			if err != nil {
				got = err.Error() + "\n"
				var errs conf.Errors
				if !errors.As(err, &errs) {
					t.Fatalf("error is not conf.Errors: %T %v", err, err)
				}
			}
			checkGolden(t, filepath.Join(dir, "validate.err"), got)
			if strings.HasPrefix(issuePrefix.ReplaceAllString(filepath.Base(dir), ""), "ok_") != (got == "") {
				t.Errorf("case %s: ok_ (or issue_<n>_ok_) cases must load and the others must not", dir)
			}
		})
	}
}

func warnings(cfg *Config) string {
	if cfg == nil {
		return ""
	}
	var b strings.Builder
	for _, w := range cfg.Warnings {
		b.WriteString(w.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// checkGolden compares got with the golden file (missing: empty), or
// rewrites it under -update.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if got == "" {
			_ = os.Remove(golden)
			return
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, _ := os.ReadFile(golden)
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept)\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

// Every error line must start with FILE:LINE:COL, which is what editors and
// `ferry validate` users rely on.
func TestErrorsArePositioned(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/validate.err")
	warns, _ := filepath.Glob("testdata/*/validate.warn")
	for _, g := range append(cases, warns...) {
		data, _ := os.ReadFile(g)
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			file := filepath.Join(filepath.Dir(g), "ferry.yaml")
			rest, ok := strings.CutPrefix(line, file+":")
			parts := strings.SplitN(rest, ":", 3)
			if !ok || len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[0] == "0" {
				t.Errorf("%s: line not positioned: %q", g, line)
			}
		}
	}
}

// TestSectionDigest: a reload keeps a module whose section reads the same
// (comments, quoting and layout aside) and restarts one whose values changed.
func TestSectionDigest(t *testing.T) {
	digest := func(text string) [32]byte {
		t.Helper()
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatal(err)
		}
		return sectionDigest(doc.Content[0])
	}
	base := digest("type: modbus\npoll_interval: 1s\ntags: [{name: a, address: 1}]\n")
	for _, same := range []string{
		"# the press\ntype: modbus   # over TCP\npoll_interval: \"1s\"\ntags:\n  - name: a\n    address: 1\n",
		"{type: 'modbus', poll_interval: 1s, tags: [{name: \"a\", address: 1}]}\n",
	} {
		if digest(same) != base {
			t.Errorf("%q counts as a change", same)
		}
	}
	for _, changed := range []string{
		"type: modbus\npoll_interval: 2s\ntags: [{name: a, address: 1}]\n",
		"type: modbus\npoll_interval: 1s\ntags: [{name: a, address: \"1\"}]\n",
		"type: modbus\npoll_interval: 1s\ntags: [{name: a, address: 1}, {name: b, address: 2}]\n",
		"type: modbus\npoll_interval: 1s\ntags: [{name: a}]\naddress: 1\n",
	} {
		if digest(changed) == base {
			t.Errorf("%q does not count as a change", changed)
		}
	}
}

// A module that failed to start is built again from its section (fresh):
// from the section as loaded, even when the environment behind a ${...}
// has changed since, and without Load holding on to the YAML tree.
func TestFreshDecodesTheLoadedSection(t *testing.T) {
	env := map[string]string{"PREFIX": "press"}
	r := conf.Resolver{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	var tags strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&tags, "      - {name: t%04d, signal: counter}\n", i)
	}
	text := "connectors:\n  gen:\n    type: generator\n    interval: 250ms\n    device_prefix: ${PREFIX}\n    tags:\n" + tags.String() +
		"  out: {type: file, path: out.jsonl}\nroutes:\n  - {from: gen, to: out}\n"

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := Load("test.yaml", []byte(text), r)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The decoded tags and the file's bytes stay (100–130 KB); with the
	// tree of some 7,000 nodes it was over 900 KB.
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if held > 400<<10 {
		t.Errorf("a loaded config of 1,000 tags holds %d KB of heap; the YAML tree was kept", held>>10)
	}

	env["PREFIX"] = "changed"
	m := c.Modules[slices.IndexFunc(c.Modules, func(m *Module) bool { return m.Name == "gen" })]
	g := m.fresh().(*generator.Generator)
	if g.DevicePrefix != "press" || len(g.Tags) != 1000 || g.Interval.D() != 250*time.Millisecond || g.Tags[999].Name != "t0999" {
		t.Fatalf("fresh connector differs from the loaded section: prefix %q, %d tags, interval %v", g.DevicePrefix, len(g.Tags), g.Interval.D())
	}
	runtime.KeepAlive(c)
}
