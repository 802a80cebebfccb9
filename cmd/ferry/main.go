// Command ferry is the edge gateway: run a pipeline, validate a config, and
// (as the connectors grow) browse, scan and simulate devices.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/ferry-gateway/ferry/connectors/all"
)

type command struct {
	name, usage, summary string
	run                  func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands []command

func init() {
	commands = []command{
		{"run", "ferry run [-c FILE] [--data-dir DIR] [--admin-addr HOST:PORT]", "run a pipeline (the embedded demo when no -c is given)", runCmd},
		{"validate", "ferry validate -c FILE [-v]", "check a config and print every problem as FILE:LINE:COL: message", validateCmd},
		{"version", "ferry version", "print the version", versionCmd},
		{"passwd", "ferry passwd < password", "print a bcrypt hash of the password on standard input, for the embedded broker's users", passwdCmd},
		{"spool", "ferry spool inspect|verify [--data-dir DIR]", "show what waits in each sink's spool (inspect), or read every file of it and report damage and what it lost (verify)", spoolCmd},
		{"scan", "ferry scan modbus ENDPOINT [--unit N] [--area A] [--range 0-199]", "read a device's registers and show each as uint16, int16 and float32 in every word order", scanCmd},
		{"plan", "ferry plan -c FILE", "show each modbus device's coalesced read plan", planCmd},
		{"sim", "ferry sim modbus|opcua [flags]", "run a device simulator (the demo's Modbus device, an OPC UA server) until interrupted", simDispatch},
		{"browse", "ferry browse opc.tcp://HOST:PORT[/PATH] [--depth N] [--security POLICY/MODE]", "print an OPC UA server's address space: NodeId, class, data type, access", browseCmd},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ferry: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ferry — an edge gateway for factories")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-60s %s\n", c.usage, c.summary)
	}
}

// flags builds a FlagSet that reports errors instead of exiting, so that
// every command returns its exit code from one place.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args, mapping -h to exit 0 and bad flags to exit 2.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q is not one of text, json", l.format)
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("ferry browse URL --depth 2"), and prints the usage (exit
// code 2) when the positional arguments are not what want accepts.
func parseInterleaved(fs *flag.FlagSet, args []string, want func(pos []string) bool) ([]string, int, bool) {
	pos, code, ok := interleaved(fs, args)
	if ok && !want(pos) {
		fs.Usage()
		return nil, 2, false
	}
	return pos, code, ok
}

func interleaved(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		if fs.NArg() == 0 {
			return pos, 0, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
