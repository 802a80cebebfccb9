package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
)

func validateCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("validate", stderr)
	file := configFlag(fs, "config `file` to check (or give it as the argument)")
	verbose := fs.Bool("v", false, "also print what the config builds: modules and routes")
	fs.BoolVar(verbose, "verbose", false, "same as -v")
	if code, ok := parseConfigArgs(fs, file, args); !ok {
		return code
	}
	cfg, ok := loadOrReport(*file, stdout)
	if !ok {
		return 1
	}
	// Warnings do not fail the check: the config runs as written.
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, w)
	}
	if *verbose {
		for _, m := range cfg.Modules {
			fmt.Fprintf(stdout, "module %s: type %s, %s\n", m.Name, m.Type, m.Roles())
		}
		for _, r := range cfg.CompiledRoutes() {
			fmt.Fprintf(stdout, "route %s: to %v, priority %d\n", r.Name, r.To, r.Priority)
		}
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// loadOrReport loads a config, or prints every problem, one
// FILE:LINE:COL: message per line, and reports false.
func loadOrReport(file string, out io.Writer) (*router.Config, bool) {
	cfg, err := router.LoadFile(file)
	if err == nil {
		return cfg, true
	}
	var errs conf.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(out, e)
		}
	} else {
		fmt.Fprintln(out, err)
	}
	return nil, false
}
