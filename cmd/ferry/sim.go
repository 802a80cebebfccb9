package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// simKinds are the simulators `ferry sim KIND` runs. Each gets the
// arguments that follow its kind.
var simKinds = map[string]struct {
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}{
	"modbus": {"ferry sim modbus [--addr 127.0.0.1:5020]", func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return simCmd(ctx, append([]string{"modbus"}, args...), stdout, stderr)
	}},
	"opcua": {"ferry sim opcua [--addr 127.0.0.1:4840] [--tags 1000] [--interval 1s]", simOPCUACmd},
}

// simDispatch is `ferry sim KIND [flags]`.
func simDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if k, ok := simKinds[args[0]]; ok {
			return k.run(ctx, args[1:], stdout, stderr)
		}
	}
	kinds := make([]string, 0, len(simKinds))
	for k := range simKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	help := wantsHelp(args)
	if !help {
		fmt.Fprintf(stderr, "ferry sim: name a simulator (%s)\n", strings.Join(kinds, ", "))
	}
	fmt.Fprintln(stderr, "usage:")
	for _, k := range kinds {
		fmt.Fprintln(stderr, "  "+simKinds[k].usage)
	}
	if help {
		fmt.Fprintln(stderr, "\n'ferry help sim KIND' prints a simulator's flags.")
		return 0
	}
	return 2
}
