package conf

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Port  int      `yaml:"port"`
	Every Duration `yaml:"every"`
}

type outer struct {
	Name  string           `yaml:"name"`
	Inner inner            `yaml:"inner"`
	List  []inner          `yaml:"list"`
	Map   map[string]inner `yaml:"map"`
	Size  Size             `yaml:"size"`
	To    StringList       `yaml:"to"`
}

func decode(t *testing.T, text string) (outer, Errors) {
	t.Helper()
	src, err := Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var o outer
	return o, src.Decode(src.Root, &o, "")
}

func TestDecodeReportsEveryProblemWithPosition(t *testing.T) {
	_, errs := decode(t, `name: x
inner:
  port: abc
  bogus: 1
list:
  - port: 1
    every: -5s
  - whatever: 2
map:
  a: {every: soon}
size: 12 parsecs
top_level_typo: 1
`)
	want := []string{
		"f.yaml:3:9: inner.port: string \"abc\" where a whole number is expected",
		`f.yaml:4:3: inner.bogus: unknown key "bogus"; valid keys here are every, port`,
		"f.yaml:7:12: list[0].every: duration -5s is negative; expected zero or more",
		`f.yaml:8:5: list[1].whatever: unknown key "whatever"; valid keys here are every, port`,
		`f.yaml:10:14: map.a.every: "soon" is not a duration`,
		`f.yaml:11:7: size: "12 parsecs" is not a size`,
		`f.yaml:12:1: top_level_typo: unknown key "top_level_typo"`,
	}
	got := errs.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(errs), len(want), got)
	}
	if !errors.Is(errs, ErrInvalidConfig) {
		t.Error("errors do not wrap ErrInvalidConfig")
	}
}

func TestDecodeValid(t *testing.T) {
	o, errs := decode(t, "name: x\ninner: {port: 8, every: 1m30s}\nsize: 64MiB\nto: one\n")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if o.Inner.Port != 8 || o.Inner.Every.D() != 90*time.Second || o.Size != 64<<20 || len(o.To) != 1 || o.To[0] != "one" {
		t.Fatalf("decoded %+v", o)
	}
	o, _ = decode(t, "to: [a, b]\n")
	if len(o.To) != 2 {
		t.Fatalf("list form: %v", o.To)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse("bad.yaml", []byte("a: 1\nb: [1, 2\nc: 3\n"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("want one positioned error, got %v", err)
	}
	if errs[0].Line < 1 || !strings.HasPrefix(errs[0].Error(), "bad.yaml:") || !strings.Contains(errs[0].Msg, "yaml syntax") {
		t.Fatalf("got %q", errs[0].Error())
	}
}

func TestLocate(t *testing.T) {
	src, err := Parse("f.yaml", []byte("devices:\n  - name: plc1\n    regs:\n      - {addr: 1}\n      - {addr: 2, type: x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for path, line := range map[string]int{
		"devices[0].regs[1].type":    5,
		"devices[plc1].regs[1].type": 5,
		"devices[plc1].regs[0]":      4,
		"devices[9]":                 2, // deepest existing node: the list
		"devices[0].missing":         2,
	} {
		if n := Locate(src.Root, path); n == nil || n.Line != line {
			t.Errorf("Locate(%s) line = %v, want %d", path, n, line)
		}
	}
}

func TestInterpolate(t *testing.T) {
	dir := t.TempDir()
	secret := dir + "/pw"
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PORT": "1883", "EMPTY": ""}
	r := Resolver{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	src, err := Parse("f.yaml", []byte("port: ${PORT}\npw: ${file:"+secret+"}\nd: ${NOPE:-dflt}\ne: ${EMPTY:-x}\nlit: a$$b\nkeep: $HOME\n"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := src.Interpolate(r); len(errs) > 0 {
		t.Fatal(errs)
	}
	var got struct {
		Port int    `yaml:"port"`
		PW   string `yaml:"pw"`
		D    string `yaml:"d"`
		E    string `yaml:"e"`
		Lit  string `yaml:"lit"`
		Keep string `yaml:"keep"`
	}
	if errs := src.Decode(src.Root, &got, ""); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got.Port != 1883 || got.PW != "s3cret" || got.D != "dflt" || got.E != "x" || got.Lit != "a$b" || got.Keep != "$HOME" {
		t.Fatalf("got %+v", got)
	}

	src, _ = Parse("f.yaml", []byte("a: ${MISSING}\nb: ${file:/nonexistent/x}\nc: ${bad name}\nd: ${open\n"))
	errs := src.Interpolate(r)
	if len(errs) != 4 {
		t.Fatalf("want 4 errors, got %v", errs)
	}
	for i, e := range errs {
		if e.Line != i+1 || e.Col != 4 {
			t.Errorf("error %d at %d:%d, want %d:4: %v", i, e.Line, e.Col, i+1, e)
		}
	}
	if !strings.Contains(errs[0].Msg, "MISSING is not set") {
		t.Errorf("message %q", errs[0].Msg)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"512": 512, "4KiB": 4096, "10MB": 10e6, "1.5GiB": 3 << 29, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "ten", "5 XB", "NaN"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestProblemsNest(t *testing.T) {
	var inner Problems
	inner.Add("type", "bad")
	var p Problems
	p.Nest("registers[3]", inner.Err())
	var fe *FieldError
	if !errors.As(p.Err(), &fe) || fe.Path != "registers[3].type" {
		t.Fatalf("got %v", p.Err())
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("name: x\ninner: {port: 1}\n"))
	f.Add([]byte("list: [{port: 1}, {every: 5s}]\nsize: 1MiB\n"))
	f.Add([]byte("a: ${X}\n"))
	f.Add([]byte("[[[\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		src.Interpolate(Resolver{Env: func(string) (string, bool) { return "", false }, ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist }})
		var o outer
		src.Decode(src.Root, &o, "")
		Locate(src.Root, "list[0].every")
	})
}
