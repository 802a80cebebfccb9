package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/router"
)

// spoolCmd is `ferry spool inspect --data-dir DIR`: what waits in every spool
// under a data dir, readable while ferry runs (it takes no lock and needs no
// key).
func spoolCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "inspect" {
		fmt.Fprintln(stderr, "usage: ferry spool inspect [--data-dir DIR]")
		return 2
	}
	fs := flags("spool inspect", stderr)
	dataDir := fs.String("data-dir", router.DefaultDataDir, "ferry's data directory")
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	root := filepath.Join(*dataDir, "spool")
	entries, err := os.ReadDir(root)
	if err != nil {
		fmt.Fprintf(stderr, "ferry spool inspect: no spools under %s: %v\n", *dataDir, err)
		return 1
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tLANE\tPRIORITY\tBATCHES\tRECORDS\tBYTES\tDISK\tOLDEST")
	code := 0
	for _, name := range names {
		st, err := spool.Inspect(filepath.Join(root, name))
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			code = 1
			continue
		}
		fmt.Fprintf(tw, "%s\t(all)\t\t%d\t%d\t%d\t%d\t%s\n", name, st.Entries, st.Records, st.Bytes, st.DiskBytes, age(st.Oldest))
		for _, l := range st.Lanes {
			fmt.Fprintf(tw, "\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", l.Topic, l.Priority, l.Entries, l.Records, l.Bytes, l.DiskBytes, age(l.Oldest))
		}
		for _, r := range st.Recovered {
			fmt.Fprintf(tw, "\tdamage: %+v\n", r)
		}
	}
	tw.Flush()
	return code
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
