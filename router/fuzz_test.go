package router

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// FuzzLoad feeds arbitrary files to the whole loader (parse, interpolate,
// decode every connector, compile routes): it must return errors, never
// panic. The golden configs are the seeds.
func FuzzLoad(f *testing.F) {
	cases, _ := filepath.Glob("testdata/*/ferry.yaml")
	for _, c := range cases {
		data, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	r := conf.Resolver{
		Env:      func(string) (string, bool) { return "1", true },
		ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load("fuzz.yaml", data, r)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
