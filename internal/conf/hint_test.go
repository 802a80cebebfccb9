package conf

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSuggest(t *testing.T) {
	orders := []string{"ABCD", "BADC", "CDAB", "DCBA"}
	for _, c := range []struct {
		got   string
		valid []string
		want  string
	}{
		{"cdab", orders, "CDAB"}, // case alone
		{"CDBA", orders, "CDAB"}, // a swap
		{"XYZW", orders, ""},     // nothing close
		{"CDAB", orders, ""},     // valid already
		{"adress", []string{"address", "area"}, "address"},
		{"poll_intervall", []string{"poll_interval", "timeout"}, "poll_interval"},
		{"x", []string{"y"}, ""}, // one letter of one is not a likeness
		{"jsn", []string{"json"}, "json"},
		{"drop-newest", []string{"drop-oldest", "block"}, ""}, // close in letters, not in meaning
	} {
		if got := Suggest(c.got, c.valid); got != c.want {
			t.Errorf("Suggest(%q, %v) = %q, want %q", c.got, c.valid, got, c.want)
		}
	}
}

func TestWithHint(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`"cdab" is not one of ABCD, BADC, CDAB, DCBA`, `"cdab" is not one of ABCD, BADC, CDAB, DCBA; did you mean CDAB?`},
		{`unknown type "flaot32"; expected one of int16, float32, float64`, `unknown type "flaot32"; expected one of int16, float32, float64; did you mean float32?`},
		{`unknown module "clod"; sinks are cloud, out`, `unknown module "clod"; sinks are cloud, out; did you mean cloud?`},
		{`"n" is not one of N (none), E (even), O (odd)`, `"n" is not one of N (none), E (even), O (odd); did you mean N?`},
		{`"zzz" is not one of a, b`, `"zzz" is not one of a, b`},
		{`unknown module "x"; sinks are (none configured)`, `unknown module "x"; sinks are (none configured)`},
		{`port "x" is taken`, `port "x" is taken`},
	} {
		if got := withHint(c.in); got != c.want {
			t.Errorf("withHint(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestUnknownKeyHint(t *testing.T) {
	_, errs := decode(t, "inner:\n  prot: 1\n")
	want := `f.yaml:2:3: inner.prot: unknown key "prot"; did you mean port? valid keys here are every, port`
	if errs.Error() != want {
		t.Errorf("got  %s\nwant %s", errs, want)
	}
}

// Each mistake must be told in words at its own line and column, not as
// the parser's "value is not allowed in this context".
func TestIndentationErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"key under a key with a value", "a:\n  b: 1\n   c: 2\n",
			`f.yaml:3:4: yaml: "c:" starts in column 4, further right than "b:" on line 2 (column 3), which has a value already`},
		{"list item between levels", "a:\n  l:\n    - x: 1\n   - x: 2\n",
			`f.yaml:4:4: yaml: this list item in column 4 lines up with nothing above it: the list on line 3 has its dashes in column 5, and the keys on line 2 start in column 3`},
		{"key between levels", "r:\n  - from: a\n    to: b\n   where: x\n",
			`f.yaml:4:4: yaml: "where:" in column 4 lines up with nothing above it`},
		{"key in the dashes' column", "l:\n  - name: a\n  unit: x\n",
			`f.yaml:3:3: yaml: "unit:" in column 3 is in the column of the dashes of the list on line 2; indent it to column 5`},
		{"list item among keys", "a:\n  b: 1\n  - c\n",
			`f.yaml:3:3: yaml: a list item in column 3, among the keys of the mapping on line 2`},
		{"colon in a value", "a:\n  summary: temp: high\n",
			`f.yaml:2:16: yaml: the value of "summary" holds ": "`},
		{"tab", "a:\n\tb: 1\n", `f.yaml:2:1: yaml: a tab in the indentation`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.text))
			if err == nil {
				t.Fatal("parsed")
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("got  %v\nwant %s…", err, c.want)
			}
		})
	}
}

// The indentation checker runs only on text that failed to parse, but it
// must not invent a problem in YAML that is valid: every YAML file of the
// repository (samples, examples, golden configs) passes through it clean.
func TestIndentationCheckerQuietOnValidYAML(t *testing.T) {
	n := 0
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) != nil {
			return nil // broken on purpose (golden cases)
		}
		n++
		if line, col, msg, ok := indentProblem(data); ok {
			t.Errorf("%s:%d:%d: valid YAML reported: %s", path, line, col, msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("only %d YAML files checked", n)
	}
	t.Logf("%d valid YAML files checked", n)
}

func TestSizeUnitInTheWrongCase(t *testing.T) {
	for in, want := range map[string]string{
		"256mb":  "did you mean 256MB (powers of 1000) or 256MiB (powers of 1024)?",
		"1gib":   "did you mean 1GiB?",
		"2 Kib":  "did you mean 2KiB?",
		"lots":   "such as 64MiB",
		"12 pcs": "such as 64MiB",
	} {
		_, err := ParseSize(in)
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("ParseSize(%q) = %v, want …%s", in, err, want)
		}
	}
}

// A size reads back in the unit it was written in.
func TestSizeString(t *testing.T) {
	for in, want := range map[string]string{"256MB": "256MB", "256MiB": "256MiB", "1.5GiB": "1536MiB", "2GB": "2GB", "4096": "4KiB", "1000": "1000B", "100": "100B"} {
		s, err := ParseSize(in)
		if err != nil || s.String() != want {
			t.Errorf("ParseSize(%q).String() = %q (%v), want %q", in, s.String(), err, want)
		}
	}
}

func TestClearSecrets(t *testing.T) {
	src, err := Parse("f.yaml", []byte(`connectors:
  cloud:
    password: hunter2
    token: ${TOKEN}
    key_file: /etc/ferry/key.pem
    password_hash: $2a$10$abc
    headers:
      Authorization: Bearer abc
      X-Trace: on
  hook:
    token: ""
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range src.ClearSecrets() {
		got = append(got, w.String())
	}
	want := []string{
		"f.yaml:3:15: warning: connectors.cloud.password: password is written in clear text",
		"f.yaml:8:22: warning: connectors.cloud.headers.Authorization: Authorization is written in clear text",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d warnings, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got  %s\nwant %s…", got[i], want[i])
		}
	}
	if !strings.Contains(got[0], "${CLOUD_PASSWORD}") {
		t.Errorf("no environment variable proposed: %s", got[0])
	}
}
