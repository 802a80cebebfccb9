package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/router"
)

const spoolUsage = "usage: ferry spool inspect [-c FILE | --data-dir DIR]\n" +
	"       ferry spool verify [-c FILE | --data-dir DIR | --dir SPOOLDIR] [--key-file FILE]"

// spoolCmd is `ferry spool inspect|verify`. Both read a spool without
// opening it for writing (no lock, no repair), so they work while ferry
// runs.
func spoolCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "inspect":
			return spoolInspect(ctx, args[1:], stdout, stderr)
		case "verify":
			return spoolVerify(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, spoolUsage)
	if wantsHelp(args) {
		return 0
	}
	return 2
}

// spoolInspect is `ferry spool inspect --data-dir DIR`: what waits in every
// spool under a data dir (it needs no key).
func spoolInspect(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("spool inspect", stderr)
	file := configFlag(fs, "the config `file`: its data_dir, and the spools its sinks keep elsewhere (store_and_forward.dir)")
	dataDir := fs.String("data-dir", router.DefaultDataDir, "ferry's data directory")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	targets, code := spoolTargetsFor(fs, "spool inspect", *file, *dataDir, stderr)
	if targets == nil {
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tLANE\tPRIORITY\tBATCHES\tRECORDS\tBYTES\tDISK\tOLDEST")
	for _, tg := range targets {
		name, dir := tg.name, tg.dir
		st, err := spool.Inspect(dir)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			code = 1
			continue
		}
		fmt.Fprintf(tw, "%s\t(all)\t\t%d\t%d\t%d\t%d\t%s\n", name, st.Entries, st.Records, st.Bytes, st.DiskBytes, age(st.Oldest))
		for _, l := range st.Lanes {
			fmt.Fprintf(tw, "\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", l.Topic, l.Priority, l.Entries, l.Records, l.Bytes, l.DiskBytes, age(l.Oldest))
		}
		// The damage line is the row's last cell, so its length does not
		// widen the table's columns.
		for _, r := range st.Recovered {
			fmt.Fprintf(tw, "\tdamage: %s\n", damageLine(r, dir))
		}
	}
	tw.Flush()
	return code
}

// spoolVerify is `ferry spool verify`: every file of every spool read to its
// end, and each piece of damage named with the seqs and records it cost.
// Exit 1 when any spool is damaged or could not be read as a spool.
func spoolVerify(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("spool verify", stderr)
	file := configFlag(fs, "the config `file`: verify the spools under its data_dir and those its sinks keep elsewhere, each with its key_file")
	dataDir := fs.String("data-dir", router.DefaultDataDir, "ferry's data directory: verify every spool under DIR/spool")
	one := fs.String("dir", "", "verify only the spool in this directory")
	keyFile := fs.String("key-file", "", "the spool's key_file: also decrypt and authenticate every encrypted entry (with -c, instead of the sinks' own)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *one != "" && (isSet(fs, "data-dir") || *file != "") {
		fmt.Fprintln(stderr, "ferry spool verify: --dir excludes --data-dir and -c")
		return 2
	}
	targets := []spoolTarget{{dir: *one}}
	if *one == "" {
		var code int
		if targets, code = spoolTargetsFor(fs, "spool verify", *file, *dataDir, stderr); targets == nil {
			return code
		}
	}
	var damaged, failed int
	var lostEntries, lostRecords int64
	exact, entriesExact := true, true
	for i, tg := range targets {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		key := tg.keyFile
		if *keyFile != "" {
			key = *keyFile
		}
		rep, err := spool.Verify(tg.dir, key)
		if err != nil {
			fmt.Fprintf(stdout, "%s: cannot verify: %v\n", tg.dir, err)
			failed++
			continue
		}
		printReport(stdout, rep, key)
		if !rep.Healthy() {
			damaged++
		}
		e, r := rep.Lost()
		lostEntries += e
		lostRecords += r
		for _, d := range rep.Damage {
			exact = exact && recordsExact(d)
			entriesExact = entriesExact && d.Kind != spool.DamageTornTail
		}
	}
	summary := fmt.Sprintf("%s, %d damaged", plural(len(targets), "spool"), damaged)
	if failed > 0 {
		summary += fmt.Sprintf(", %d unreadable", failed)
	}
	fmt.Fprintf(stdout, "\n%s, %s%d entries / %s%d records lost\n", summary,
		atLeast(entriesExact), lostEntries, atLeast(exact), lostRecords)
	if damaged > 0 || failed > 0 {
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep spool.Report, keyFile string) {
	state := "healthy"
	if !rep.Healthy() {
		state = "DAMAGED"
	}
	fmt.Fprintf(w, "%s: %s\n", rep.Dir, state)
	fmt.Fprintf(w, "  %s, %s, %s, %d bytes; %s\n", plural(rep.Segments, "segment"), plural64(rep.Entries, "entry"),
		plural64(rep.Records, "record"), rep.Bytes, encryption(rep, keyFile))
	laneDamage := 0
	for _, l := range rep.Lanes {
		fmt.Fprintf(w, "  lane %s priority %d: %s, %s, %s", l.Topic, l.Priority,
			plural(l.Segments, "segment"), plural64(l.Entries, "entry"), plural64(l.Records, "record"))
		if l.Entries > 0 {
			fmt.Fprintf(w, ", seq %d..%d", l.FirstSeq, l.LastSeq)
		}
		if l.HeadSeq > 0 {
			fmt.Fprintf(w, ", next to deliver %d", l.HeadSeq)
		}
		fmt.Fprintln(w)
		for _, d := range l.Damage {
			fmt.Fprintf(w, "    damage: %s\n", damageLine(d, rep.Dir))
		}
		laneDamage += len(l.Damage)
	}
	// What is not a lane's (spool.meta) comes after the lanes'.
	if laneDamage < len(rep.Damage) {
		for _, d := range rep.Damage {
			if d.Kind == spool.DamageMeta {
				fmt.Fprintf(w, "  damage: %s\n", damageLine(d, rep.Dir))
			}
		}
	}
}

func encryption(rep spool.Report, keyFile string) string {
	switch {
	case !rep.Encrypted:
		return "not encrypted"
	case !rep.Decrypted:
		return "encrypted, not authenticated (no --key-file)"
	}
	for _, d := range rep.Damage {
		if d.Kind == spool.DamageEntries {
			// Verify lists an entry that fails to authenticate as damaged
			// entries, like one whose checksum fails: they cannot be told
			// apart here.
			return "encrypted, checked with " + keyFile + " (entries that failed are listed as damage)"
		}
	}
	return "encrypted, every entry authenticated with " + keyFile
}

// damageLine describes one piece of damage: its kind, the seqs and records
// lost, and the file, relative to the spool's directory.
func damageLine(r spool.Recovery, dir string) string {
	var b strings.Builder
	b.WriteString(r.Kind)
	if r.Entries > 0 {
		torn := r.Kind == spool.DamageTornTail
		if torn {
			// How many entries followed the first torn one is not known.
			fmt.Fprintf(&b, " from seq %d", r.FirstSeq)
		} else {
			fmt.Fprintf(&b, " seq %d..%d", r.FirstSeq, r.LastSeq)
		}
		fmt.Fprintf(&b, ": %s%s, %s%s lost", atLeast(!torn), plural64(r.Entries, "entry"),
			atLeast(recordsExact(r)), plural64(r.Records, "record"))
	} else {
		b.WriteString(": " + consequence(r.Kind))
	}
	if r.Kind == spool.DamageTornTail {
		b.WriteString(" (or a write in progress, when ferry is running)")
	}
	p := r.Segment
	if rel, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(rel, "..") {
		p = rel
	}
	fmt.Fprintf(&b, " [%s", p)
	if r.Offset > 0 {
		fmt.Fprintf(&b, " at %d", r.Offset)
	}
	b.WriteString("]")
	return b.String()
}

func atLeast(exact bool) string {
	if exact {
		return ""
	}
	return "at least "
}

func recordsExact(r spool.Recovery) bool {
	return r.Entries == 0 || (r.RecordsExact && r.Kind != spool.DamageTornTail)
}

// consequence is what damage that lost no entry means.
func consequence(kind string) string {
	switch kind {
	case spool.DamageHead:
		return "acknowledged entries will be delivered again"
	case spool.DamageMeta:
		return "rebuilt from the segments on the next start"
	}
	return "nothing lost"
}

// spoolTarget is one spool a command reads.
type spoolTarget struct {
	name, dir, keyFile string
}

// spoolTargets lists the spools under dataDir/spool and, with a config
// file, those of its sinks (from its data_dir, a store_and_forward dir of
// their own included, each with its key_file). A spool on disk that no
// sink of the config names any more is listed too: it may still hold data.
func spoolTargets(file, dataDir string) ([]spoolTarget, string, error) {
	var targets []spoolTarget
	known := map[string]bool{}
	if file != "" {
		cfg, err := router.LoadFile(file)
		if err != nil {
			return nil, "", err
		}
		dataDir = cfg.DataDir
		for _, m := range cfg.Modules {
			if m.Spool == nil || m.JetStream {
				continue
			}
			dir := router.SpoolDir(dataDir, m)
			targets = append(targets, spoolTarget{name: m.Name, dir: dir, keyFile: m.Spool.KeyFile})
			known[filepath.Clean(dir)] = true
		}
	}
	root := filepath.Join(dataDir, "spool")
	names, err := spoolNames(root)
	if err != nil && (file == "" || !errors.Is(err, os.ErrNotExist)) {
		return nil, dataDir, err
	}
	for _, n := range names {
		if dir := filepath.Join(root, n); !known[filepath.Clean(dir)] {
			targets = append(targets, spoolTarget{name: n, dir: dir})
		}
	}
	return targets, dataDir, nil
}

// spoolTargetsFor is spoolTargets for a command: -c and --data-dir exclude
// each other, and no spool at all is an error. On failure it returns nil
// and the exit code, having said why.
func spoolTargetsFor(fs *flag.FlagSet, cmd, file, dataDir string, stderr io.Writer) ([]spoolTarget, int) {
	if file != "" && isSet(fs, "data-dir") {
		fmt.Fprintf(stderr, "ferry %s: -c and --data-dir exclude each other (the config names its data_dir)\n", cmd)
		return nil, 2
	}
	targets, dir, err := spoolTargets(file, dataDir)
	if err != nil && dir == "" { // the config did not load
		fmt.Fprintf(stderr, "ferry %s: %v\n", cmd, err)
		return nil, 1
	}
	if err == nil && len(targets) == 0 {
		err = errors.New("there are none")
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry %s: no spools under %s: %v\n", cmd, dir, err)
		return nil, 1
	}
	return targets, 0
}

// spoolNames lists the spool directories under root, sorted.
func spoolNames(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func plural(n int, word string) string { return plural64(int64(n), word) }

func plural64(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
