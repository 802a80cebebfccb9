package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-gateway/ferry/connectors/opcua"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// browseCmd prints an OPC UA server's address space as a tree, so an
// integrator can pick nodes for the opcua connector.
func browseCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("browse", stderr)
	depth := fs.Int("depth", 3, "levels below the root to show")
	security := fs.String("security", "None", "POLICY[/MODE]: None, Basic256Sha256/Sign, Basic256Sha256/SignAndEncrypt, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss, auto")
	root := fs.String("root", "", "NodeId to start from (default the Objects folder), e.g. ns=2;s=Plant or nsu=urn:x;s=Plant")
	user := fs.String("user", "", "user name (anonymous when empty)")
	passEnv := fs.String("password-env", "OPCUA_PASSWORD", "environment variable holding the password")
	dataDir := fs.String("data-dir", "", "where the certificate and trust list live when a secured endpoint or a password needs them (<dir>/browse/pki; default the user's config folder, see ferry trust list)")
	withServer := fs.Bool("server", false, "include the Server object (diagnostics, capabilities) when browsing from the Objects folder")
	tofu := fs.Bool("trust-on-first-use", false, "trust the server certificate if none is trusted for its application URI yet")
	timeout := fs.Duration("timeout", 10*time.Second, "per request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry browse opc.tcp://HOST:PORT[/PATH] [--depth N] [--security POLICY/MODE] [--root NODEID] [--user NAME] [--server]")
		printFlags(fs)
	}
	pos, code, ok := parseInterleaved(fs, args, func(p []string) bool { return len(p) == 1 })
	if !ok {
		return code
	}
	policy, mode, _ := strings.Cut(*security, "/")
	opts := opcua.BrowseOptions{
		Endpoint: pos[0], Policy: policy, Mode: mode, Root: *root, Depth: *depth,
		TrustOnFirstUse: *tofu, Timeout: *timeout, Server: *withServer,
	}
	if *dataDir != "" {
		opts.Dir = filepath.Join(*dataDir, "browse", "pki")
	}
	if *user != "" {
		opts.Username, opts.Password = *user, os.Getenv(*passEnv)
	}
	// The table is printed only once the root proved to exist: a wrong
	// --root is an error, not an empty table.
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := false
	err := opcua.Browse(ctx, opts, func(e opcua.BrowseEntry) {
		if !header {
			header = true
			fmt.Fprintln(tw, "BROWSENAME\tCLASS\tNODEID\tDATATYPE\tACCESS")
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", strings.Repeat("  ", e.Depth), e.BrowseName, e.NodeClass, e.NodeID, e.DataType, e.Access)
	})
	_ = tw.Flush()
	if err == nil && !header {
		fmt.Fprintln(stderr, "ferry browse: the root has no children")
	}
	if err != nil {
		fmt.Fprintln(stderr, "ferry browse:", err)
		return 1
	}
	return 0
}

// simOPCUACmd runs the OPC UA simulator until the context ends.
func simOPCUACmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("sim opcua", stderr)
	addr := fs.String("addr", "127.0.0.1:4840", "address to listen on")
	tags := fs.Int("tags", 1000, "changing variables under Plant/LineNN")
	perLine := fs.Int("per-line", 1000, "variables per Plant/LineNN folder")
	interval := fs.Duration("interval", time.Second, "how often every variable changes (0: never)")
	user := fs.String("user", "", "enable user name logins: NAME:PASSWORD")
	noAnon := fs.Bool("deny-anonymous", false, "refuse anonymous sessions")
	var lf logFlags
	lf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry sim opcua [--addr 127.0.0.1:4840] [--tags 1000] [--interval 1s] [--user NAME:PASSWORD]")
		printFlags(fs)
	}
	_, code, ok := parseInterleaved(fs, args, func(p []string) bool { return len(p) == 0 })
	if !ok {
		return code
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ferry sim:", err)
		return 2
	}
	cfg := simopcua.Config{Addr: *addr, Tags: *tags, PerLine: *perLine, Interval: *interval, DenyAnonymous: *noAnon, Logger: logger}
	if *user != "" {
		name, pass, ok := strings.Cut(*user, ":")
		if !ok || name == "" {
			fmt.Fprintln(stderr, "ferry sim: --user wants NAME:PASSWORD")
			return 2
		}
		cfg.Users = map[string]string{name: pass}
	}
	s, err := simopcua.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ferry sim:", err)
		return 1
	}
	fmt.Fprintf(stdout, "opcua sim listening on %s: %d variables under ns=%d;s=Plant (namespace %s), thumbprint %s\n",
		s.Endpoint(), s.Tags(), s.NamespaceIndex(), s.NamespaceURI(), opcua.Thumbprint(s.Certificate()))
	fmt.Fprintf(stdout, "try: ferry browse %s --depth 3\n", s.Endpoint())
	return runUntilDone(ctx, s.Close, stderr)
}
