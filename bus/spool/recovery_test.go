package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// entryOffsets walks a segment file and returns where each entry starts,
// and the file's length last.
func entryOffsets(t *testing.T, data []byte) []int64 {
	t.Helper()
	offs := []int64{fileHeaderLen}
	for off := int64(fileHeaderLen); off < int64(len(data)); {
		h, ok := parseHeader(data[off:])
		if !ok || h.kind != kindMessage {
			t.Fatalf("bad entry at %d before the test damaged anything", off)
		}
		off += h.size()
		offs = append(offs, off)
	}
	return offs
}

// TestTornTail truncates or corrupts the last segment at random offsets:
// the spool opens, discards exactly the damaged entry (and, for a tail,
// nothing else), reports it, counts it and serves the rest.
func TestTornTail(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const n = 40
	for _, p := range permutations {
		for _, mode := range []string{"truncate", "corrupt"} {
			for round := range 6 {
				t.Run(fmt.Sprintf("%s/%s/%d", p.name, mode, round), func(t *testing.T) {
					cfg := testConfig(t, p.encrypt)
					cfg.SegmentSize = 1 << 20
					s := open(t, cfg)
					var all []string
					for i := range n {
						m := msg(i)
						m.Payload = append(m.Payload, strings.Repeat("y", rng.IntN(200))...)
						all = append(all, string(m.Payload))
						publish(t, s, "t", m)
					}
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					path := filepath.Join(cfg.Dir, lanesDir, "t", "p0", segName(1))
					data, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					offs := entryOffsets(t, data)
					off := fileHeaderLen + rng.Int64N(int64(len(data))-fileHeaderLen)
					k, _ := slices.BinarySearch(offs, off) // damaged entry: offs[k] <= off < offs[k+1]
					if offs[k] != off {
						k--
					}
					var want []string
					var wantRec *Recovery
					seq := uint64(k + 1)
					// With its header intact the entry's record count is read.
					exact := off-offs[k] >= headerLen
					switch mode {
					case "truncate":
						if err := os.Truncate(path, off); err != nil {
							t.Fatal(err)
						}
						want = all[:k]
						if off != offs[k] {
							wantRec = &Recovery{Kind: DamageTornTail, Segment: path, Offset: offs[k], Bytes: off - offs[k],
								Entries: 1, FirstSeq: seq, LastSeq: seq, Records: 1, RecordsExact: exact, Truncated: true}
						}
					case "corrupt":
						data[off] ^= byte(1 + rng.IntN(255))
						if err := os.WriteFile(path, data, 0o600); err != nil {
							t.Fatal(err)
						}
						want = append(slices.Clone(all[:k]), all[k+1:]...)
						kind := DamageEntries
						if k == n-1 {
							kind = DamageTornTail
						}
						wantRec = &Recovery{Kind: kind, Segment: path, Offset: offs[k], Bytes: offs[k+1] - offs[k],
							Entries: 1, FirstSeq: seq, LastSeq: seq, Records: 1, RecordsExact: exact, Truncated: k == n-1}
					}
					t.Logf("%s at %d of %d bytes: entry %d [%d, %d)", mode, off, len(data), k, offs[k], offs[k+1])

					s = open(t, cfg)
					recs := s.Recovered()
					switch {
					case wantRec == nil && len(recs) != 0:
						t.Fatalf("recovered %+v, want nothing", recs)
					case wantRec != nil && (len(recs) != 1 || recs[0] != *wantRec):
						t.Fatalf("recovered %+v, want %+v", recs, *wantRec)
					}
					if wantRec != nil && s.Stats().Dropped[reasonCorrupt] != 1 {
						t.Fatalf("corrupt drops = %v", s.Stats().Dropped)
					}
					if fi, err := os.Stat(path); err != nil || (wantRec != nil && wantRec.Truncated && fi.Size() != offs[k]) {
						t.Fatalf("segment not cut at %d: %v %v", offs[k], fi.Size(), err)
					}
					// The rest is served, and appends go on after it.
					publish(t, s, "t", msg(1000))
					ch := subscribe(t, s, "t")
					got := payloads(receive(t, ch, len(want)+1, 5*time.Second))
					if !slices.Equal(got, append(want, "m001000")) {
						t.Fatalf("served %d messages, want %d:\n got %.200v\nwant %.200v", len(got), len(want)+1, got, want)
					}
					none(t, ch)
				})
			}
		}
	}
}

// TestDamageInSealedSegment: a sealed segment is trusted on its seal at
// open; damage in it is found while reading, skipped and counted.
func TestDamageInSealedSegment(t *testing.T) {
	for _, where := range []string{"header", "body"} {
		t.Run(where, func(t *testing.T) {
			cfg := testConfig(t, false)
			cfg.checkpointEvery = time.Millisecond
			s := open(t, cfg)
			var all []string
			for i := range 100 {
				m := msg(i)
				m.Payload = append(m.Payload, strings.Repeat("z", 2000)...)
				all = append(all, string(m.Payload))
				publish(t, s, "t", m)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(cfg.Dir, lanesDir, "t", "p0", segName(1))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			offs := entryOffsets(t, data[:len(data)-sealLen])
			k := 5
			pos := offs[k] + 20 // the seq, in the header
			if where == "body" {
				pos = offs[k] + headerLen + 10
			}
			data[pos] ^= 0x40
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s = open(t, cfg)
			if r := s.Recovered(); len(r) != 0 {
				t.Fatalf("a sealed segment was scanned on open: %+v", r)
			}
			want := append(slices.Clone(all[:k]), all[k+1:]...)
			got := payloads(receive(t, subscribe(t, s, "t"), len(want), 5*time.Second))
			if !slices.Equal(got, want) {
				t.Fatalf("served %d, want %d", len(got), len(want))
			}
			waitFor(t, func() bool { return s.Stats().Dropped[reasonCorrupt] == 1 && s.Stats().Entries == 0 })
		})
	}
}

// TestCrashChild is the process TestCrashDurability kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SPOOL_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrashDurability")
	}
	s, err := Open(Config{Dir: dir, Fsync: os.Getenv("SPOOL_CRASH_FSYNC"), SegmentSize: 256 << 10}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				m := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%d %d %s", p, i, strings.Repeat("r", 300))))
				if err := s.Publish("uplink", m); err != nil {
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ok %d %d\n", p, i)
				err := out.Flush() // a line means Publish returned
				mu.Unlock()
				if err != nil {
					os.Exit(4) // the parent is gone
				}
			}
		}()
	}
	wg.Wait()
}

// TestCrashDurability runs a publisher in a subprocess, kills it with
// SIGKILL mid-stream and reopens the spool without it having closed: every
// message whose Publish returned is there, in order per publisher.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns subprocesses")
	}
	for _, policy := range FsyncPolicies {
		t.Run(policy, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
			cmd.Env = append(os.Environ(), "SPOOL_CRASH_DIR="+dir, "SPOOL_CRASH_FSYNC="+policy)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := map[string]bool{}
			sc := bufio.NewScanner(stdout)
			killed := false
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "ok ") {
					continue
				}
				acked[strings.TrimPrefix(line, "ok ")] = true
				if len(acked) == 2000 && !killed {
					killed = true
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			}
			_ = cmd.Wait()
			if !killed {
				t.Fatalf("child ended after %d messages before it was killed", len(acked))
			}

			s := open(t, Config{Dir: dir, Fsync: policy, SegmentSize: 256 << 10})
			n := s.Stats().Entries
			got := receive(t, subscribe(t, s, "uplink"), int(n), 10*time.Second)
			last := map[string]int{}
			found := map[string]bool{}
			for _, m := range got {
				f := strings.Fields(string(m.Payload))
				i, _ := strconv.Atoi(f[1])
				if prev, ok := last[f[0]]; ok && i <= prev {
					t.Fatalf("publisher %s: %d after %d", f[0], i, prev)
				}
				last[f[0]] = i
				found[f[0]+" "+f[1]] = true
			}
			lost := 0
			for k := range acked {
				if !found[k] {
					lost++
				}
			}
			t.Logf("fsync %s: %d acknowledged before SIGKILL, %d in the spool after restart (recovered: %+v), lost %d",
				policy, len(acked), len(got), s.Recovered(), lost)
			if lost > 0 {
				t.Fatalf("lost %d acknowledged messages", lost)
			}
		})
	}
}

// TestReopenMillionRecords: with 1,000,000 records waiting, the first one
// is delivered within 1s of Open (no full scan).
func TestReopenMillionRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1,000,000 records")
	}
	cfg := testConfig(t, false)
	cfg.SegmentSize = DefaultSegmentSize
	cfg.Quota = DefaultQuota
	s := open(t, cfg)
	proto := batchMsg(500, 0)
	for range 2000 {
		m := message.NewMessage(watermill.NewUUID(), proto.Payload)
		m.Metadata = proto.Metadata
		publish(t, s, "uplink", m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s = open(t, cfg)
	opened := time.Since(start)
	receive(t, subscribe(t, s, "uplink"), 1, 5*time.Second)
	first := time.Since(start)
	st := s.Stats()
	t.Logf("1,000,000 records in %d segments (%d MB): Open %s, first message %s", st.Lanes[0].Segments, st.DiskBytes>>20, opened, first)
	if st.Records != 1_000_000 {
		t.Fatalf("%d records wait, want 1,000,000", st.Records)
	}
	if first > time.Second {
		t.Fatalf("first message after %s, want within 1s", first)
	}
}
