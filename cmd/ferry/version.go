package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3";
// revision likewise where the build sees no VCS (a container build without
// .git): -X main.revision=$(git rev-parse HEAD).
var version, revision = "", ""

// versionString names the module version, the VCS revision and commit time
// the binary was built from (with "modified" when the tree had changes),
// and the toolchain.
func versionString(bi *debug.BuildInfo) string {
	v := version
	if v == "" {
		v = "devel"
		if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	var rev, at string
	modified := false
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = revision
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ferry %s", v)
	if rev != "" {
		fmt.Fprintf(&b, " revision %s", rev)
		if at != "" {
			fmt.Fprintf(&b, " (%s)", at)
		}
		if modified {
			b.WriteString(" modified")
		}
	} else {
		b.WriteString(" (no VCS revision in the build)")
	}
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(&b, " %s %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func versionCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("version", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionString(bi))
	return 0
}
