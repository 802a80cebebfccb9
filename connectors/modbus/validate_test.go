package modbus

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

var update = flag.Bool("update", false, "rewrite testdata/validate/*/validate.err")

// decodeText decodes a connector section the way the loader does, so
// errors carry FILE:LINE:COL.
func decodeText(t testing.TB, file, text string) (*Modbus, conf.Errors) {
	t.Helper()
	src, err := conf.Parse(file, []byte(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	m := &Modbus{}
	return m, connectors.Decode(src, src.Root, m, "")
}

// TestValidateGolden checks every case under testdata/validate: the
// problems of modbus.yaml, one per line as `ferry validate` prints them,
// must equal validate.err. Run with -update to rewrite them.
func TestValidateGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/validate/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(dir, "modbus.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			_, errs := decodeText(t, "modbus.yaml", string(text))
			errs.Sort() // as ferry validate prints them
			var got strings.Builder
			for _, e := range errs {
				got.WriteString(e.Error())
				got.WriteByte('\n')
			}
			golden := filepath.Join(dir, "validate.err")
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("problems differ from %s:\n--- got\n%s--- want\n%s", golden, got.String(), want)
			}
		})
	}
}
