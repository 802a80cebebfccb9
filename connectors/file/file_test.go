package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "file", "README.md")
}

func newFile(t *testing.T, path string) *File {
	t.Helper()
	f := &File{Config: Config{Path: path}}
	f.SetDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestConformance(t *testing.T) {
	var last string
	conntest.Run(t, conntest.Features{Sink: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			last = filepath.Join(t.TempDir(), "out.jsonl")
			return newFile(t, last)
		},
		FailStart: func(t *testing.T) connectors.Connector {
			// A path under a regular file cannot be created.
			blocker := filepath.Join(t.TempDir(), "blocker")
			if err := os.WriteFile(blocker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return newFile(t, filepath.Join(blocker, "out.jsonl"))
		},
		Delivered: func(t *testing.T, seqs []uint64) bool {
			got := map[uint64]bool{}
			for _, r := range readLines(t, last) {
				got[uint64(r["seq"].(float64))] = true
			}
			for _, s := range seqs {
				if !got[s] {
					return false
				}
			}
			return true
		},
	})
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.jsonl")
	f := newFile(t, path)
	f.MaxSize = 4096
	f.MaxFiles = 2
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "f", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	b := conntest.SampleBatch(10) // about 2.3 KB of JSON lines
	total := 0
	for range 12 {
		if err := f.Write(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
		total += len(b.Records)
	}
	if err := f.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(path + "*")
	if len(names) != 3 { // r.jsonl, r.jsonl.1, r.jsonl.2
		t.Fatalf("files after rotation: %v", names)
	}
	kept := 0
	for _, n := range names {
		st, _ := os.Stat(n)
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over max_size", n, st.Size())
		}
		kept += len(readLines(t, n))
	}
	// Rotation keeps max_files old files; it must never split a batch.
	if kept%10 != 0 || kept == 0 || kept > total {
		t.Fatalf("kept %d records of %d", kept, total)
	}
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	f := newFile(t, "-")
	f.Stdout = &buf
	env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "f"})
	if err := f.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	b := conntest.SampleBatch(3)
	if err := f.Write(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d lines on stdout, want 3", n)
	}
}

func TestValidate(t *testing.T) {
	f := &File{Config: Config{Format: "xml", MaxSize: 10, MaxFiles: -1}}
	err := f.Validate()
	for _, want := range []string{"path: missing path", `format: "xml" is not one of json-lines, json-array, json`, "max_size: 10B is too small", "max_files: must be at least 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// TestFormats: every format writes lines a line-oriented reader takes, each
// line one JSON value; json writes what json-lines does.
func TestFormats(t *testing.T) {
	b := conntest.SampleBatch(4)
	out := map[string][]byte{}
	for _, format := range Formats {
		var buf bytes.Buffer
		f := &File{Config: Config{Path: "-", Format: format}, Stdout: &buf}
		f.TimeFormat = "unix_ms"
		f.Fields = []string{"seq", "ts"}
		f.SetDefaults()
		if err := f.Validate(); err != nil {
			t.Fatal(err)
		}
		env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "f"})
		if err := f.Start(t.Context(), env); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := f.Write(t.Context(), &b); err != nil {
				t.Fatal(err)
			}
		}
		out[format] = buf.Bytes()
		var n int
		for line := range bytes.Lines(buf.Bytes()) {
			d := json.NewDecoder(bytes.NewReader(line))
			var v any
			if err := d.Decode(&v); err != nil || d.More() {
				t.Fatalf("%s: line %q is not one JSON value: %v", format, line, err)
			}
			switch v := v.(type) {
			case []any:
				n += len(v)
			case map[string]any:
				if len(v) != 2 || v["ts"] != float64(b.Records[n%4].SourceTime/1e6) {
					t.Fatalf("%s: %q, want seq and ts in ms", format, line)
				}
				n++
			}
		}
		if n != 8 {
			t.Fatalf("%s: %d records in %q, want 8", format, n, buf.Bytes())
		}
	}
	if !bytes.Equal(out["json"], out["json-lines"]) || bytes.Count(out["json-array"], []byte("\n")) != 2 {
		t.Fatalf("json and json-lines differ, or json-array is not a line per batch:\n%s\n%s\n%s", out["json"], out["json-lines"], out["json-array"])
	}
}
