// Command ferry is the edge gateway: run a pipeline, validate a config, and
// browse, scan and simulate devices.
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
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	_ "github.com/ferry-gateway/ferry/connectors/all"
)

type command struct {
	name, usage, summary string
	run                  func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	// logs marks the commands that take --log-level and --log-format, so
	// the global form (before the command) reaches them.
	logs bool
}

var commands []command

func init() {
	// In the order an integrator meets them: run and check a config, find
	// the tags of a device, try without a device, then the tools of a
	// running gateway.
	commands = []command{
		{"run", "ferry run [-c FILE] [--data-dir DIR] [--admin-addr HOST:PORT] [--demo-port-offset N]", "run a pipeline (the embedded demo when no -c is given)", runCmd, true},
		{"validate", "ferry validate FILE (or -c FILE) [-v]", "check a config and print every problem as FILE:LINE:COL: message", validateCmd, false},
		{"test", "ferry test FILE (or -c FILE) [--module NAME] [--for 5s] [--json]", "start a config's sources only, print the records they read and a summary per device; exit 1 if one did not start or a device never answered", testCmd, false},
		{"plan", "ferry plan FILE (or -c FILE)", "show each modbus device's coalesced read plan", planCmd, false},
		{name: "import", usage: "ferry import modbus-csv FILE [--device NAME] [--endpoint URL] [--unit N] [-o FILE]", summary: "turn a CSV tag list (a PLC export) into a modbus connector section, checked as validate would", run: importCmd},
		{"browse", "ferry browse opc.tcp://HOST:PORT[/PATH] [--depth N] [--security POLICY/MODE]", "print an OPC UA server's address space: NodeId, class, data type, access", browseCmd, false},
		{"trust", "ferry trust list|accept THUMBPRINT [--data-dir DIR] [--pki DIR]", "list the OPC UA server certificates ferry refused (and trusts), and trust one by its thumbprint", trustCmd, false},
		{"scan", "ferry scan modbus ENDPOINT [--unit N] [--area A] [--range 0-199]", "read a device's registers and show each as uint16, int16 and float32 in every word order", scanCmd, false},
		{"sim", "ferry sim modbus|opcua [flags]", "run a device simulator (the demo's Modbus device, an OPC UA server) until interrupted", simDispatch, true},
		{"spool", "ferry spool inspect|verify [--data-dir DIR]", "show what waits in each sink's spool (inspect), or read every file of it and report damage and what it lost (verify)", spoolCmd, false},
		{"deadletter", deadletterUsage[len("usage: "):], "list what an http uplink dead-lettered (refused for its content), or replay it once the far side is fixed", deadletterCmd, false},
		{"passwd", "ferry passwd < password", "print a bcrypt hash of the password on standard input, for the embedded broker's users", passwdCmd, false},
		{"version", "ferry version", "print the version, the VCS revision and time, and the Go version", versionCmd, false},
		{"help", "ferry help [COMMAND]", "print this usage, or a command's flags", nil, false},
	}
}

func main() {
	noHeapProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globalFlags are the flags given before the command.
type globalFlags struct {
	help, version bool
	log           []string // --log-level/--log-format and their values, passed on to the command
}

// parseGlobal takes the flags before the command. Only the log flags carry
// a value; they are handed to the command as if given after it.
func parseGlobal(args []string, stderr io.Writer) (globalFlags, []string, bool) {
	var g globalFlags
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		args = args[1:]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "h", "help":
			g.help = true
		case "v", "version":
			g.version = true
		case "log-level", "log-format":
			if !hasValue {
				if len(args) == 0 {
					fmt.Fprintf(stderr, "ferry: %s needs a value\n", a)
					return g, nil, false
				}
				value, args = args[0], args[1:]
			}
			g.log = append(g.log, "--"+name, value)
		default:
			fmt.Fprintf(stderr, "ferry: unknown flag %s\n\n", a)
			return g, nil, false
		}
	}
	return g, args, true
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g, args, ok := parseGlobal(args, stderr)
	if !ok {
		usage(stderr)
		return 2
	}
	switch {
	case g.version:
		return versionCmd(ctx, nil, stdout, stderr)
	case g.help || len(args) == 0:
		usage(stdout)
		return 0
	case args[0] == "help":
		return helpCmd(ctx, args[1:], stdout, stderr)
	}
	c, ok := lookup(args[0])
	if !ok {
		unknownCommand(stderr, "ferry", args[0])
		fmt.Fprintf(stderr, "\nRun 'ferry help' for the list of commands.\n")
		return 2
	}
	rest := args[1:]
	if len(g.log) > 0 {
		if !c.logs {
			fmt.Fprintf(stderr, "ferry: %s does not apply to %s, which writes no log\n", g.log[0], c.name)
			return 2
		}
		rest = withLogFlags(c.name, rest, g.log)
	}
	// A help request prints to standard output (as `ferry help CMD` does),
	// so that `ferry run --help | less` works.
	if wantsHelp(rest) {
		stderr = stdout
	}
	return c.run(ctx, rest, stdout, stderr)
}

// withLogFlags puts the global log flags where the command parses flags:
// after the simulator's kind for sim, first otherwise. A flag also given
// after the command wins, being parsed later.
func withLogFlags(name string, args, log []string) []string {
	if name == "sim" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return slices.Concat(args[:1], log, args[1:])
	}
	return slices.Concat(log, args)
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// helpCmd is `ferry help [COMMAND [SUB]]`: the usage, or the command's own
// help (its flags), on standard output with exit 0.
func helpCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	c, ok := lookup(args[0])
	if !ok || c.run == nil {
		unknownCommand(stderr, "ferry help", args[0])
		fmt.Fprintln(stderr)
		return 2
	}
	return c.run(ctx, append(args[1:len(args):len(args)], "--help"), stdout, stdout)
}

// unknownCommand names a mistyped command and the one it likely meant,
// without ending the line.
func unknownCommand(w io.Writer, prefix, typed string) {
	fmt.Fprintf(w, "%s: unknown command %q", prefix, typed)
	if s := suggest(typed); s != "" {
		fmt.Fprintf(w, "; did you mean %q?", s)
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// suggest returns the command nearest to a mistyped one: a unique prefix,
// or the closest by edit distance: one edit, or a third of the length.
func suggest(typed string) string {
	best, bestD := "", max(2, len(typed)/3+1)
	var prefixed []string
	for _, c := range commands {
		if strings.HasPrefix(c.name, typed) {
			prefixed = append(prefixed, c.name)
		}
		if d := editDistance(typed, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return best
}

// editDistance is the Damerau–Levenshtein distance (adjacent swaps count
// one), the usual measure of a typo.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ferry — an edge gateway for factories")
	fmt.Fprintln(w, "\nUsage: ferry [global flags] COMMAND [flags]")
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nGlobal flags:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  --log-level LEVEL\tdebug, info, warn or error (default info); for run and sim")
	fmt.Fprintln(tw, "  --log-format FORMAT\ttext or json (default text); for run and sim")
	fmt.Fprintln(tw, "  -h, --help\tprint this usage")
	fmt.Fprintln(tw, "  -v, --version\tprint the version")
	_ = tw.Flush()
	fmt.Fprintln(w, "\nRun 'ferry help COMMAND' or 'ferry COMMAND --help' for a command's flags.")
}

// flags builds a FlagSet that reports errors instead of exiting, so that
// every command returns its exit code from one place. Its usage prints the
// command's synopsis and summary, then its flags.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		top, _, _ := strings.Cut(name, " ")
		if c, ok := lookup(top); ok && top == name {
			fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n", c.usage, c.summary)
		} else {
			fmt.Fprintf(fs.Output(), "usage: ferry %s [flags]\n", name)
		}
		printFlags(fs)
	}
	return fs
}

// aliases are flags that are the same setting as another, shown on the
// other's line in a usage.
var aliases = map[string]string{"config": "c", "verbose": "v"}

// printFlags prints a FlagSet's flags in aligned columns, long names with
// two dashes, an alias on the line of the flag it stands for.
func printFlags(fs *flag.FlagSet) {
	alias := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if to, ok := aliases[f.Name]; ok && fs.Lookup(to) != nil {
			alias[to] = f.Name
		}
	})
	w := fs.Output()
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		if to, ok := aliases[f.Name]; ok && fs.Lookup(to) != nil {
			return
		}
		arg, text := flag.UnquoteUsage(f)
		names := dashed(f.Name)
		if a, ok := alias[f.Name]; ok {
			names += ", " + dashed(a)
		}
		switch arg {
		case "":
		case "string":
			names += " VALUE"
		case "int", "uint":
			names += " N"
		default:
			names += " " + strings.ToUpper(arg)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", names, text)
	})
	_ = tw.Flush()
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// configFlag registers -c and --config, the one way every command that
// reads a config names its file.
func configFlag(fs *flag.FlagSet, usage string) *string {
	var file string
	fs.StringVar(&file, "c", "", usage)
	fs.StringVar(&file, "config", "", usage)
	return &file
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
	fs.StringVar(&l.format, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log `level`: debug, info, warn or error")
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

// parseConfigArgs parses the flags of a command that checks a config file,
// named by -c/--config or as its one positional argument (`ferry validate
// ferry.yaml`, as linters take files).
func parseConfigArgs(fs *flag.FlagSet, file *string, args []string) (int, bool) {
	pos, code, ok := interleaved(fs, args)
	if !ok {
		return code, false
	}
	switch {
	case len(pos) > 1 || (len(pos) == 1 && *file != "" && *file != pos[0]):
		fmt.Fprintf(fs.Output(), "%s: one config file, please (got %s)\n", fs.Name(), strings.Join(append(pos, *file), ", "))
		return 2, false
	case len(pos) == 1:
		*file = pos[0]
	case *file == "":
		fmt.Fprintf(fs.Output(), "%s: name the config file: %s FILE, or -c FILE\n", fs.Name(), fs.Name())
		return 2, false
	}
	return 0, true
}
