package router

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	// Only the built-in connectors, so golden messages listing the registered
	// types do not change whenever a connector is added.
	_ "github.com/ferry-gateway/ferry/connectors/file"
	_ "github.com/ferry-gateway/ferry/connectors/generator"
	"github.com/ferry-gateway/ferry/internal/conf"
)

var update = flag.Bool("update", false, "rewrite the golden validate.err files")

// TestValidateGolden loads every testdata/<case>/ferry.yaml and compares the
// errors with validate.err (empty or missing: the config must load).
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
			_, err = Load(file, data, conf.Resolver{Env: func(string) (string, bool) { return "", false }})
			got := ""
			if err != nil {
				got = err.Error() + "\n"
				var errs conf.Errors
				if !errors.As(err, &errs) {
					t.Fatalf("error is not conf.Errors: %T %v", err, err)
				}
			}
			golden := filepath.Join(dir, "validate.err")
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
				t.Errorf("errors differ from %s (run with -update to accept)\n--- got\n%s--- want\n%s", golden, got, want)
			}
			if strings.HasPrefix(filepath.Base(dir), "ok_") != (got == "") {
				t.Errorf("case %s: ok_ cases must load and the others must not", dir)
			}
		})
	}
}

// Every error line must start with FILE:LINE:COL, which is what editors and
// `ferry validate` users rely on.
func TestErrorsArePositioned(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/validate.err")
	for _, g := range cases {
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
