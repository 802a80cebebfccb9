package spool

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// TestConfigFromYAML decodes a store_and_forward section the way the loader
// will, strictly, and checks that Validate's problems land on their lines.
func TestConfigFromYAML(t *testing.T) {
	dir := t.TempDir()
	good := `dir: ` + dir + `
segment_size: 32MiB
quota: 2GiB
on_full: block
fsync: always
fsync_interval: 50ms
max_age: 24h
window: 64
`
	src, err := conf.Parse("ferry.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if errs := src.Decode(src.Root, &c, "store_and_forward"); len(errs) > 0 {
		t.Fatal(errs)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{Dir: dir, SegmentSize: 32 << 20, Quota: 2 << 30, OnFull: Block, Fsync: FsyncAlways,
		FsyncInterval: conf.Duration(50 * time.Millisecond), MaxAge: conf.Duration(24 * time.Hour), Window: 64,
		Name: filepath.Base(dir), checkpointEvery: time.Second}
	if c != want {
		t.Fatalf("decoded %+v\nwant %+v", c, want)
	}

	bad := `dir: ` + dir + `
fsync: sometimes
segment_size: 16MiB
quota: 1MiB
key_file: /nonexistent/spool.key
`
	src, err = conf.Parse("ferry.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	c = Config{}
	if errs := src.Decode(src.Root, &c, "store_and_forward"); len(errs) > 0 {
		t.Fatal(errs)
	}
	c.SetDefaults()
	got := src.Positioned(src.Root, "store_and_forward", c.Validate())
	got.Sort()
	lines := strings.Split(got.Error(), "\n")
	wantLines := []string{
		`ferry.yaml:2:8: store_and_forward.fsync: "sometimes" is not one of always, interval, never`,
		`ferry.yaml:4:8: store_and_forward.quota: 1MiB is below one segment (segment_size 16MiB)`,
		`ferry.yaml:5:11: store_and_forward.key_file: cannot read key: open /nonexistent/spool.key: no such file or directory`,
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", got.Error(), strings.Join(wantLines, "\n"))
	}
}
