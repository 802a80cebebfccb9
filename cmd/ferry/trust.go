package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/ferry-gateway/ferry/connectors/opcua"
	"github.com/ferry-gateway/ferry/router"
)

const trustUsage = "usage: ferry trust list [--data-dir DIR] [--pki DIR]\n" +
	"       ferry trust accept THUMBPRINT [--data-dir DIR] [--pki DIR]"

// trustCmd is `ferry trust list|accept`: the OPC UA server certificates
// ferry refused (and those it trusts), and moving one from rejected/ to
// trusted/ after the operator compared its thumbprint with the server's.
// The connectors pick a newly trusted certificate up on their next
// connection attempt; no restart is needed.
func trustCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "list":
			return trustList(ctx, args[1:], stdout, stderr)
		case "accept":
			return trustAccept(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, trustUsage)
	if wantsHelp(args) {
		return 0
	}
	return 2
}

// pkiFlags are the flags both subcommands take.
type pkiFlags struct{ dataDir, pki *string }

func (p pkiFlags) register(name string, stderr io.Writer) (*pkiFlags, func([]string, func([]string) bool) ([]string, int, bool)) {
	fs := flags("trust "+name, stderr)
	p.dataDir = fs.String("data-dir", router.DefaultDataDir, "ferry's data directory: every <dir>/<module>/pki, and the browse command's")
	p.pki = fs.String("pki", "", "one pki folder (holding trusted/ and rejected/) instead, e.g. the parent of a connector's trust_dir")
	return &p, func(args []string, want func([]string) bool) ([]string, int, bool) {
		return parseInterleaved(fs, args, want)
	}
}

// dirs are the pki folders to look in, each named for the table.
func (p *pkiFlags) dirs() []string {
	if *p.pki != "" {
		return []string{*p.pki}
	}
	found, _ := filepath.Glob(filepath.Join(*p.dataDir, "*", "pki"))
	if d, err := opcua.DefaultBrowseDir(); err == nil {
		if _, err := os.Stat(d); err == nil {
			found = append(found, d)
		}
	}
	sort.Strings(found)
	return found
}

func trustList(_ context.Context, args []string, stdout, stderr io.Writer) int {
	p, parse := pkiFlags{}.register("list", stderr)
	if _, code, ok := parse(args, func(pos []string) bool { return len(pos) == 0 }); !ok {
		return code
	}
	dirs := p.dirs()
	if len(dirs) == 0 {
		fmt.Fprintf(stderr, "ferry trust: no pki folder under %s (give --data-dir or --pki)\n", *p.dataDir)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PKI\tSTATE\tTHUMBPRINT\tSUBJECT\tAPPLICATION URI\tEXPIRES")
	rc := 0
	for _, d := range dirs {
		for _, state := range []string{"rejected", "trusted"} {
			certs, err := opcua.ListCertificates(filepath.Join(d, state))
			if err != nil {
				fmt.Fprintln(stderr, "ferry trust:", err)
				rc = 1
				continue
			}
			for _, c := range certs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d, state, c.Thumbprint, c.Subject, c.URI, c.NotAfter.Format("2006-01-02"))
			}
		}
	}
	_ = tw.Flush()
	return rc
}

func trustAccept(_ context.Context, args []string, stdout, stderr io.Writer) int {
	p, parse := pkiFlags{}.register("accept", stderr)
	pos, code, ok := parse(args, func(pos []string) bool { return len(pos) == 1 })
	if !ok {
		return code
	}
	// A server's certificate rejected by several connectors (or by
	// browse) is trusted for each of them.
	var moved int
	var errs []error
	for _, d := range p.dirs() {
		c, err := opcua.TrustRejected(d, pos[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		moved++
		fmt.Fprintf(stdout, "trusted %q (%s), thumbprint %s: %s\n", c.Subject, c.URI, c.Thumbprint, c.Path)
	}
	if moved == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("no pki folder under %s (give --data-dir or --pki)", *p.dataDir))
		}
		fmt.Fprintln(stderr, "ferry trust:", errors.Join(errs...))
		return 1
	}
	return 0
}
