package compress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestRoundTripAndNames(t *testing.T) {
	src := bytes.Repeat([]byte(`{"device":"press-1","tag":"temp","value":21.5}`+"\n"), 200)
	for _, name := range []string{"gzip", "zstd"} {
		c, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		if c.Encoding() != name {
			t.Fatalf("encoding %q", c.Encoding())
		}
		// Concurrent use, and appending after a prefix.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				out := c.Append([]byte("prefix"), src)
				if !bytes.HasPrefix(out, []byte("prefix")) || len(out) > len(src)/5 {
					t.Errorf("%s: %d bytes from %d", name, len(out), len(src))
					return
				}
				back, err := Decode(name, out[len("prefix"):])
				if err != nil || !bytes.Equal(back, src) {
					t.Errorf("%s: round trip: %v", name, err)
				}
			})
		}
		wg.Wait()
	}
	for _, none := range []string{"", "none"} {
		c, err := New(none)
		if err != nil || c != nil || c.Encoding() != "" || !bytes.Equal(c.Append(nil, src), src) {
			t.Fatalf("%q: %v %v", none, c, err)
		}
	}
	if _, err := New("brotli"); err == nil || !strings.Contains(err.Error(), "none, gzip, zstd") {
		t.Fatalf("unknown name: %v", err)
	}
	if Check("zstd") != "" || Check("lz4") == "" {
		t.Fatal("Check")
	}
	if _, err := Decode("br", nil); err == nil {
		t.Fatal("unknown encoding decoded")
	}
}
