package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
)

const recordsPerBatch = 3

// writeSpool makes a spool in dir of n batches of recordsPerBatch records
// (about 4KB each, so 64KiB segments hold about 15), encrypted when key is
// set, closes it and returns its segment files in seq order.
func writeSpool(t *testing.T, dir, key string, n int) []string {
	t.Helper()
	sp, err := spool.Open(spool.Config{Dir: dir, SegmentSize: 64 << 10, KeyFile: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		b := &bus.Batch{}
		for j := range recordsPerBatch {
			b.Records = append(b.Records, bus.Record{Source: "g", Tag: fmt.Sprintf("t%d/%s", j, strings.Repeat("x", 1300)),
				SourceTime: 1e18, IngestTime: 1e18, Seq: uint64(i*recordsPerBatch + j)})
		}
		if err := sp.Publish("router/cloud", bus.NewMessage(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "lanes", "*", "p0", "*.seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("%d segments (%v), want 3 or more", len(segs), err)
	}
	slices.Sort(segs) // names are zero-padded base seqs
	return segs
}

// segBase is the first seq of a segment, from its file name.
func segBase(t *testing.T, path string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeKeyFile(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	p := filepath.Join(t.TempDir(), "spool.key")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// treeState is every file under dir with its size, mode, time and content
// hash: what must not change when a spool is only read.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sum := ""
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(data)
			sum = hex.EncodeToString(h[:8])
		}
		fmt.Fprintf(&b, "%s %v %d %d %s\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSpoolVerify: one healthy and one damaged spool under a data dir; the
// damage is named with its exact seqs, the exit code and summary say so,
// and nothing on disk changes.
func TestSpoolVerify(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, how := range []string{"deleted", "zeroed"} {
			t.Run(fmt.Sprintf("encrypted=%v/%s", enc, how), func(t *testing.T) {
				key := ""
				if enc {
					key = writeKeyFile(t)
				}
				data := t.TempDir()
				good, bad := filepath.Join(data, "spool", "archive"), filepath.Join(data, "spool", "cloud")
				writeSpool(t, good, key, 40)
				segs := writeSpool(t, bad, key, 60)
				// Spool seq i+1 is batch i.
				first, last := segBase(t, segs[1]), segBase(t, segs[2])-1
				n := last - first + 1
				switch how {
				case "deleted":
					if err := os.Remove(segs[1]); err != nil {
						t.Fatal(err)
					}
				case "zeroed":
					fi, err := os.Stat(segs[1])
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(segs[1], make([]byte, fi.Size()), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				before := treeState(t, data)

				args := []string{"spool", "verify", "--data-dir", data}
				if enc {
					args = append(args, "--key-file", key)
				}
				code, out, errs := run(t, t.Context(), args...)
				if code != 1 {
					t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errs)
				}
				kind := map[string]string{"deleted": spool.DamageMissingSegment, "zeroed": spool.DamageSegment}[how]
				want := fmt.Sprintf("damage: %s seq %d..%d: %d entries, at least %d records lost [lanes/", kind, first, last, n, n)
				if !strings.Contains(out, want) {
					t.Fatalf("no %q in\n%s", want, out)
				}
				summary := fmt.Sprintf("2 spools, 1 damaged, %d entries / at least %d records lost\n", n, n)
				if !strings.HasSuffix(out, summary) {
					t.Fatalf("summary: want %q at the end of\n%s", summary, out)
				}
				if !strings.Contains(out, good+": healthy\n") || !strings.Contains(out, bad+": DAMAGED\n") ||
					!strings.Contains(out, "40 entries, 120 records") ||
					!strings.Contains(out, fmt.Sprintf("%d entries, %d records", 60-n, 3*(60-n))) {
					t.Fatalf("per spool counts missing:\n%s", out)
				}
				auth := "not encrypted"
				if enc {
					auth = "encrypted, every entry authenticated with " + key
				}
				if strings.Count(out, auth) != 2 {
					t.Fatalf("want %q twice in\n%s", auth, out)
				}
				if after := treeState(t, data); after != before {
					t.Fatalf("verify changed the directory:\n%s\n%s", before, after)
				}

				// The healthy one alone, by --dir.
				args = []string{"spool", "verify", "--dir", good}
				code, out, errs = run(t, t.Context(), args...)
				if code != 0 || !strings.HasSuffix(out, "1 spool, 0 damaged, 0 entries / 0 records lost\n") ||
					!strings.Contains(out, "lane router/cloud priority 0: ") || !strings.Contains(out, "seq 1..40") {
					t.Fatalf("healthy spool: exit %d\n%s\n%s", code, out, errs)
				}
				if enc && !strings.Contains(out, "encrypted, not authenticated (no --key-file)") {
					t.Fatalf("without a key:\n%s", out)
				}

				// inspect names the same damage readably.
				code, out, errs = run(t, t.Context(), "spool", "inspect", "--data-dir", data)
				if code != 0 || !strings.Contains(out, want) {
					t.Fatalf("inspect: exit %d, want %q in\n%s\n%s", code, want, out, errs)
				}
				if after := treeState(t, data); after != before {
					t.Fatalf("inspect changed the directory:\n%s\n%s", before, after)
				}
			})
		}
	}
}

// TestSpoolVerifyExact: an entry damaged inside a sealed segment costs
// exactly its records (the seal says how many), so no "at least".
func TestSpoolVerifyExact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	segs := writeSpool(t, dir, "", 60)
	f, err := os.OpenFile(segs[1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip bytes in the middle of the segment's second entry.
	if _, err := f.WriteAt([]byte("garbage!"), 6000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, t.Context(), "spool", "verify", "--dir", dir)
	seq := segBase(t, segs[1]) + 1
	want := fmt.Sprintf("damage: entries seq %d..%d: 1 entry, 3 records lost", seq, seq)
	if code != 1 || !strings.Contains(out, want) || !strings.HasSuffix(out, "1 spool, 1 damaged, 1 entries / 3 records lost\n") {
		t.Fatalf("exit %d, want %q and an exact summary in\n%s", code, want, out)
	}
}

func TestSpoolVerifyErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	key := writeKeyFile(t)
	writeSpool(t, dir, key, 60)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"spool"}, 2, "ferry spool verify"},
		{[]string{"spool", "check"}, 2, "ferry spool verify"},
		{[]string{"spool", "verify", "--dir", dir, "--data-dir", dir}, 2, "--dir excludes --data-dir and -c"},
		{[]string{"spool", "inspect", "-c", "x.yaml", "--data-dir", dir}, 2, "exclude each other"},
		{[]string{"spool", "verify", "-c", filepath.Join(t.TempDir(), "none.yaml")}, 1, "none.yaml"},
		{[]string{"spool", "verify", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"spool", "verify", "extra"}, 2, "unexpected argument"},
		{[]string{"spool", "verify", "--data-dir", t.TempDir()}, 1, "no spools under"},
		{[]string{"spool", "verify", "--dir", t.TempDir()}, 1, "not a spool directory"},
		{[]string{"spool", "verify", "--dir", dir, "--key-file", writeKeyFile(t)}, 1, "does not open the spool"},
	} {
		code, out, errs := run(t, t.Context(), c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("%v: exit %d, want %d and %q in\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
}

// TestSpoolWithConfig: -c takes the data dir from the config, finds a
// sink's spool kept in a dir of its own, and verifies it with its own
// key_file; a spool left by a sink the config no longer has is listed too.
func TestSpoolWithConfig(t *testing.T) {
	data, elsewhere := t.TempDir(), filepath.Join(t.TempDir(), "vault")
	key := writeKeyFile(t)
	writeSpool(t, elsewhere, key, 40)
	writeSpool(t, filepath.Join(data, "spool", "old-sink"), "", 40)
	cfg := filepath.Join(t.TempDir(), "ferry.yaml")
	text := fmt.Sprintf(`data_dir: %s
connectors:
  gen: {type: generator, interval: 1s, tags: [{name: t}]}
  cloud:
    type: file
    path: out.jsonl
    store_and_forward: {dir: %s, key_file: %s}
routes:
  - {from: gen, to: cloud}
`, data, elsewhere, key)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, t.Context(), "spool", "verify", "-c", cfg)
	if code != 0 || !strings.Contains(out, elsewhere+": healthy") || !strings.Contains(out, "every entry authenticated with "+key) ||
		!strings.Contains(out, "old-sink: healthy") || !strings.Contains(out, "2 spools, 0 damaged") {
		t.Errorf("verify -c: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run(t, t.Context(), "spool", "inspect", "--config", cfg)
	if code != 0 || !strings.Contains(out, "cloud") || !strings.Contains(out, "old-sink") {
		t.Errorf("inspect -c: exit %d\n%s%s", code, out, errs)
	}
}
