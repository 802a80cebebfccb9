package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// damagedLane writes n messages of about 4KB to lane t/p0 of a fresh spool
// (64KiB segments: 15 entries each), closes it and returns the config, the
// payloads in order and the lane's segment bases.
func damagedLane(t *testing.T, encrypt bool, n int) (Config, []string, []uint64) {
	t.Helper()
	cfg := testConfig(t, encrypt)
	cfg.checkpointEvery = time.Millisecond
	s := open(t, cfg)
	var all []string
	for i := range n {
		m := msg(i)
		m.Payload = append(m.Payload, strings.Repeat("d", 4000)...)
		all = append(all, string(m.Payload))
		publish(t, s, "t", m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	bases, err := segBases(laneDir(cfg))
	if err != nil || len(bases) < 4 {
		t.Fatalf("%d segments (%v), want 4 or more", len(bases), err)
	}
	return cfg, all, bases
}

func laneDir(cfg Config) string { return filepath.Join(cfg.Dir, lanesDir, "t", "p0") }

// without returns all but the messages with seqs first..last (seq i+1 is
// message i).
func without(all []string, first, last uint64) []string {
	return append(slices.Clone(all[:first-1]), all[last:]...)
}

// sameDamage compares what a test checks of a Recovery.
func sameDamage(got, want Recovery) bool {
	return got.Kind == want.Kind && got.Entries == want.Entries && got.FirstSeq == want.FirstSeq &&
		got.LastSeq == want.LastSeq && got.Records == want.Records && got.RecordsExact == want.RecordsExact &&
		filepath.Base(got.Segment) == filepath.Base(want.Segment)
}

// checkDamage opens the damaged spool and checks that Verify (before) and
// Open report exactly want, that Open counts the records and logs the
// seqs, and that everything else is served in order.
func checkDamage(t *testing.T, cfg Config, want []Recovery, serve []string) *Spool {
	t.Helper()
	before := dirState(t, cfg.Dir)
	rep, err := Verify(cfg.Dir, cfg.KeyFile)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if after := dirState(t, cfg.Dir); after != before {
		t.Fatalf("verify changed the directory:\n%s\n%s", before, after)
	}
	if !matchDamage(rep.Damage, want) || rep.Healthy() {
		t.Fatalf("verify found %+v, want %+v", rep.Damage, want)
	}
	var logs logBuffer
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := s.Recovered(); !matchDamage(got, want) {
		t.Fatalf("open recovered %+v, want %+v", got, want)
	}
	var lost int64
	for _, w := range want {
		lost += w.Records
		if w.Entries > 0 && !strings.Contains(logs.String(), fmt.Sprintf("first_seq=%d last_seq=%d", w.FirstSeq, w.LastSeq)) {
			t.Fatalf("the log does not give the seqs lost %d..%d:\n%s", w.FirstSeq, w.LastSeq, logs.String())
		}
	}
	if d := s.Stats().Dropped[reasonCorrupt]; d != lost {
		t.Fatalf("%d records counted corrupt, want %d", d, lost)
	}
	if e, r := rep.Lost(); r != lost || e != lost { // one record per message here
		t.Fatalf("verify: lost %d entries, %d records; want %d", e, r, lost)
	}
	ch := subscribe(t, s, "t")
	got := payloads(receive(t, ch, len(serve), 5*time.Second))
	if !slices.Equal(got, serve) {
		t.Fatalf("served %d messages, want %d", len(got), len(serve))
	}
	none(t, ch)
	return s
}

func matchDamage(got, want []Recovery) bool {
	return len(got) == len(want) && !slices.ContainsFunc(want, func(w Recovery) bool {
		return !slices.ContainsFunc(got, func(g Recovery) bool { return sameDamage(g, w) })
	})
}

// dirState lists a directory tree's files with their sizes and times.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestMissingSegment: a segment deleted from the middle of a lane loses
// exactly its entries, found from its neighbours' bounds.
func TestMissingSegment(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg, all, bases := damagedLane(t, p.encrypt, 60)
			if err := os.Remove(filepath.Join(laneDir(cfg), segName(bases[1]))); err != nil {
				t.Fatal(err)
			}
			first, last := bases[1], bases[2]-1
			n := int64(last - first + 1)
			want := []Recovery{{Kind: DamageMissingSegment, Segment: segName(first), Entries: n, FirstSeq: first, LastSeq: last, Records: n}}
			checkDamage(t, cfg, want, without(all, first, last))
		})
	}
}

// TestUnreadableSegment: a middle segment zeroed, cut to nothing or cut
// inside its file header loses exactly its entries, counted from its
// neighbours (not one for an unreadable header).
func TestUnreadableSegment(t *testing.T) {
	for _, p := range permutations {
		for _, how := range []string{"zeroed", "emptied", "cut"} {
			t.Run(p.name+"/"+how, func(t *testing.T) {
				cfg, all, bases := damagedLane(t, p.encrypt, 60)
				path := filepath.Join(laneDir(cfg), segName(bases[2]))
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				switch how {
				case "zeroed":
					err = os.WriteFile(path, make([]byte, fi.Size()), 0o600)
				case "emptied":
					err = os.Truncate(path, 0)
				case "cut":
					err = os.Truncate(path, fileHeaderLen-3)
				}
				if err != nil {
					t.Fatal(err)
				}
				first, last := bases[2], bases[3]-1
				n := int64(last - first + 1)
				want := []Recovery{{Kind: DamageSegment, Segment: segName(first), Entries: n, FirstSeq: first, LastSeq: last, Records: n}}
				checkDamage(t, cfg, want, without(all, first, last))
			})
		}
	}
}

// TestSegmentTailDamaged: a middle segment damaged from one entry to its
// end (seal included) loses exactly the entries up to the next segment's
// base.
func TestSegmentTailDamaged(t *testing.T) {
	cfg, all, bases := damagedLane(t, false, 60)
	path := filepath.Join(laneDir(cfg), segName(bases[1]))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := entryOffsets(t, data[:len(data)-sealLen])
	k := 4 // entries 0..3 of the segment stay
	for i := offs[k]; i < int64(len(data)); i++ {
		data[i] = 0xA5
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	first, last := bases[1]+uint64(k), bases[2]-1
	n := int64(last - first + 1)
	want := []Recovery{{Kind: DamageEntries, Segment: segName(bases[1]), Entries: n, FirstSeq: first, LastSeq: last, Records: n}}
	checkDamage(t, cfg, want, without(all, first, last))
}

// TestDamagedSeal: a middle segment whose seal (its summary) is unreadable
// is scanned instead; nothing is lost and no loss is reported.
func TestDamagedSeal(t *testing.T) {
	cfg, all, bases := damagedLane(t, false, 60)
	path := filepath.Join(laneDir(cfg), segName(bases[1]))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-sealLen+20] ^= 0xFF // in the seal's header
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := []Recovery{{Kind: DamageSummary, Segment: segName(bases[1])}}
	checkDamage(t, cfg, want, all)
}

// TestDamagedHead: an unreadable head file loses nothing: the lane is
// delivered again from its first segment (at-least-once), the damage is
// reported, and the head file is written again.
func TestDamagedHead(t *testing.T) {
	cfg, all, _ := damagedLane(t, false, 60)
	s := open(t, cfg)
	receive(t, subscribe(t, s, "t"), 5, 5*time.Second)
	head := filepath.Join(laneDir(cfg), ckptName)
	waitFor(t, func() bool { c, ok := readCheckpoint(head); return ok && c.seq == 6 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(head, make([]byte, ckptLen), 0o600); err != nil {
		t.Fatal(err)
	}
	s = checkDamage(t, cfg, []Recovery{{Kind: DamageHead, Segment: ckptName}}, all)
	waitFor(t, func() bool { c, ok := readCheckpoint(head); return ok && c.seq == 61 })
	_ = s
}

// TestDamagedMeta: a zeroed, cut or garbled spool.meta is damage, not a
// version mismatch: it is rebuilt from the segments, and for an encrypted
// spool still refuses a missing or wrong key. A spool.meta of a newer
// format is refused.
func TestDamagedMeta(t *testing.T) {
	for _, p := range permutations {
		for _, how := range []string{"zeroed", "empty", "garbled"} {
			t.Run(p.name+"/"+how, func(t *testing.T) {
				cfg, all, _ := damagedLane(t, p.encrypt, 60)
				path := filepath.Join(cfg.Dir, metaName)
				content := map[string][]byte{"zeroed": make([]byte, 64), "empty": nil, "garbled": []byte(`{"format":1,"key_c`)}[how]
				if err := os.WriteFile(path, content, 0o600); err != nil {
					t.Fatal(err)
				}
				if p.encrypt {
					noKey := cfg
					noKey.KeyFile = ""
					if _, err := Open(noKey, nil); !errors.Is(err, ErrKeyRequired) {
						t.Fatalf("open without the key: %v, want ErrKeyRequired", err)
					}
					wrong := cfg
					wrong.KeyFile = writeKey(t, t.TempDir())
					if _, err := Open(wrong, nil); !errors.Is(err, ErrWrongKey) {
						t.Fatalf("open with another key: %v, want ErrWrongKey", err)
					}
				}
				s := checkDamage(t, cfg, []Recovery{{Kind: DamageMeta, Segment: metaName}}, all)
				if _, _, damaged, err := readMeta(cfg.Dir); damaged || err != nil {
					t.Fatalf("spool.meta not rebuilt: damaged %v, %v", damaged, err)
				}
				if st := s.Stats(); st.Encrypted != p.encrypt {
					t.Fatalf("encrypted %v after the rebuild", st.Encrypted)
				}
			})
		}
	}
	t.Run("newer-format", func(t *testing.T) {
		cfg, _, _ := damagedLane(t, false, 60)
		if err := os.WriteFile(filepath.Join(cfg.Dir, metaName), []byte(`{"format":2}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(cfg, nil); !errors.Is(err, ErrFormat) {
			t.Fatalf("open: %v, want ErrFormat", err)
		}
	})
}

// TestVerifyHealthy: a spool with nothing wrong verifies clean, with its
// counts; with the key every entry is decrypted, and a wrong key fails.
func TestVerifyHealthy(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg, _, bases := damagedLane(t, p.encrypt, 60)
			rep, err := Verify(cfg.Dir, cfg.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Healthy() || rep.Entries != 60 || rep.Records != 60 || rep.Segments != len(bases) ||
				rep.Encrypted != p.encrypt || rep.Decrypted != p.encrypt || len(rep.Lanes) != 1 {
				t.Fatalf("report %+v", rep)
			}
			if l := rep.Lanes[0]; l.FirstSeq != 1 || l.LastSeq != 60 || l.Topic != "t" {
				t.Fatalf("lane %+v", l)
			}
			if p.encrypt {
				if _, err := Verify(cfg.Dir, writeKey(t, t.TempDir())); !errors.Is(err, ErrWrongKey) {
					t.Fatalf("verify with another key: %v", err)
				}
			}
		})
	}
}

// TestVerifyFindsDamageInSealedSegment: Open trusts a sealed segment on its
// seal; Verify reads it, and counts the records lost exactly from the seal.
func TestVerifyFindsDamageInSealedSegment(t *testing.T) {
	cfg, _, bases := damagedLane(t, false, 60)
	path := filepath.Join(laneDir(cfg), segName(bases[0]))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := entryOffsets(t, data[:len(data)-sealLen])
	data[offs[3]+20] ^= 0x40 // entry 3's header (its seq)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(cfg.Dir, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Recovery{{Kind: DamageEntries, Segment: segName(bases[0]), Entries: 1, FirstSeq: 4, LastSeq: 4, Records: 1, RecordsExact: true}}
	if !matchDamage(rep.Damage, want) {
		t.Fatalf("verify found %+v", rep.Damage)
	}
	// Reading finds it too, and reports its seqs.
	s := open(t, cfg)
	receive(t, subscribe(t, s, "t"), 59, 5*time.Second)
	want[0].RecordsExact = false // counted exactly when the segment is released, from its seal
	if got := s.Recovered(); !matchDamage(got, want) {
		t.Fatalf("recovered while reading: %+v", got)
	}
	waitFor(t, func() bool { return s.Stats().Dropped[reasonCorrupt] == 1 })
}

func readCheckpoint(path string) (checkpoint, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, false
	}
	return decodeCheckpoint(b)
}
