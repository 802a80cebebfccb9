// Package sampletest checks a connector's embedded sample config the way a
// user's file is checked, and that its README shows the same text, so the
// sample stays the single source of a connector's documentation.
package sampletest

import (
	"os"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Check decodes, defaults and validates the sample of connector typ
// (strictly: an unknown key fails), and, when readme is not empty, requires
// the README to hold the sample verbatim in a ```yaml fence.
func Check(t *testing.T, typ, readme string) {
	t.Helper()
	info, ok := connectors.Lookup(typ)
	if !ok {
		t.Fatalf("connector %q is not registered", typ)
	}
	src, err := conf.Parse(typ+"/sample.yaml", info.Sample)
	if err != nil {
		t.Fatalf("sample does not parse: %v", err)
	}
	if tv := conf.MapValue(src.Root, "type"); tv == nil || tv.Value != typ {
		t.Fatalf("sample must start with type: %s", typ)
	}
	if errs := connectors.Decode(src, src.Root, info.New(), ""); len(errs) > 0 {
		t.Fatalf("sample does not validate:\n%v", errs)
	}
	if readme == "" {
		return
	}
	doc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatalf("README: %v", err)
	}
	fence := "```yaml\n" + string(info.Sample) + "```"
	if !strings.Contains(string(doc), fence) {
		t.Fatalf("%s does not hold the embedded sample.yaml verbatim in a ```yaml fence; copy it from sample.yaml", readme)
	}
}
