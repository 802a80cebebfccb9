package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	httpconn "github.com/ferry-gateway/ferry/connectors/http"
	"github.com/ferry-gateway/ferry/router"
)

const deadletterUsage = "usage: ferry deadletter list|replay -c FILE [--data-dir DIR] [--sink NAME]"

// deadletterCmd is `ferry deadletter list|replay`: what the HTTP uplinks
// of a config dead-lettered (batches the far side refused for their
// content: 400, 413, 415, 422), and sending them again once the far side
// is fixed. Both work while ferry runs.
func deadletterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, deadletterUsage)
		if wantsHelp(args) {
			return 0
		}
		return 2
	}
	verb := args[0]
	fs := flags("deadletter "+verb, stderr)
	file := fs.String("c", "", "the config file")
	dataDir := fs.String("data-dir", "", "ferry's data directory (default: the config's data_dir)")
	sink := fs.String("sink", "", "one http sink (default: every one)")
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	if *file == "" {
		fmt.Fprintln(stderr, deadletterUsage)
		return 2
	}
	cfg, err := router.LoadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "ferry deadletter: %v\n", err)
		return 1
	}
	dir := cfg.DataDir
	if *dataDir != "" {
		dir = *dataDir
	}
	code, found := 0, false
	for _, m := range cfg.Modules {
		h, ok := m.Connector.(*httpconn.HTTP)
		if !ok || h.URL == "" || (*sink != "" && m.Name != *sink) {
			continue
		}
		found = true
		if err := h.DeadLetters(ctx, m.Name, dir); err != nil {
			fmt.Fprintf(stderr, "ferry deadletter: %s: %v\n", m.Name, err)
			code = 1
			continue
		}
		if verb == "list" {
			entries, err := h.ListDeadLetters()
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SINK\tTIME\tSTATUS\tRECORDS\tANSWER\tFILE")
			for _, e := range entries {
				answer := strings.ReplaceAll(e.Answer, "\n", " ")
				if len(answer) > 60 {
					answer = answer[:60] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", m.Name, e.Time.Format("2006-01-02T15:04:05Z"), e.Status, e.Records, answer, e.File)
			}
			_ = tw.Flush()
			if err != nil {
				fmt.Fprintf(stderr, "ferry deadletter: %s: %v\n", m.Name, err)
				code = 1
			}
		} else {
			res, err := h.ReplayDeadLetters(ctx, stdout)
			fmt.Fprintf(stdout, "%s: %d sent, %d refused again, %d unreadable (kept)\n", m.Name, res.Sent, res.Refused, res.Unreadable)
			if err != nil {
				fmt.Fprintf(stderr, "ferry deadletter: %s: %v (what was not sent is kept)\n", m.Name, err)
				code = 1
			} else if res.Refused > 0 || res.Unreadable > 0 {
				code = 1
			}
		}
		_ = h.Stop(ctx)
	}
	if !found {
		fmt.Fprintf(stderr, "ferry deadletter: no http sink%s in %s\n", map[bool]string{true: " " + *sink, false: ""}[*sink != ""], *file)
		return 1
	}
	return code
}
