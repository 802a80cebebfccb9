package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-gateway/ferry/connectors/modbus"
)

// importCmd is `ferry import modbus-csv FILE`: a PLC's tag export turned
// into a modbus connector section, checked by the loader that runs it.
func importCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("import", stderr)
	device := fs.String("device", "", "the device's `name` (default: the file's name without extension)")
	endpoint := fs.String("endpoint", "tcp://127.0.0.1:502", "the device's endpoint `URL`")
	unit := fs.Int("unit", 1, "unit ID (slave address)")
	out := fs.String("o", "", "write the YAML to `file` instead of standard output")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry import modbus-csv FILE [--device NAME] [--endpoint URL] [--unit N] [-o FILE]")
		fmt.Fprintln(stderr, "FILE has a header line naming its columns: "+strings.Join(modbus.CSVColumns, ",")+"\n(name and address required; see connectors/modbus/README.md, Tag import)")
		printFlags(fs)
	}
	pos, code, ok := parseInterleaved(fs, args, func(p []string) bool { return len(p) == 2 && p[0] == "modbus-csv" })
	if !ok {
		return code
	}
	file := pos[1]
	if *device == "" {
		*device = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(stderr, "ferry import:", err)
		return 1
	}
	defer f.Close()
	yaml, err := modbus.ImportCSV(f, file, modbus.ImportOptions{Device: *device, Endpoint: *endpoint, Unit: *unit})
	if err != nil {
		var rows modbus.ImportErrors
		if errors.As(err, &rows) {
			for _, e := range rows {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "ferry import: %s: %s; nothing written\n", file, plural(len(rows), "problem"))
		} else {
			fmt.Fprintln(stderr, "ferry import:", err)
		}
		return 1
	}
	if *out == "" {
		_, err = stdout.Write(yaml)
	} else {
		err = os.WriteFile(*out, yaml, 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ferry import:", err)
		return 1
	}
	return 0
}
