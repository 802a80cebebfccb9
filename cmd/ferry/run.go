package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"time"

	"github.com/ferry-gateway/ferry/admin"
	"github.com/ferry-gateway/ferry/examples"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
)

// stopTimeout bounds a graceful shutdown: sources stop, in-flight batches
// drain to the sinks, sinks close.
const stopTimeout = 15 * time.Second

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("run", stderr)
	file := configFlag(fs, "config `file` (default: the embedded demo)")
	dataDir := fs.String("data-dir", "", "data `directory` (overrides data_dir)")
	adminAddr := fs.String("admin-addr", "", "admin HTTP address `host:port`, or \"off\" (overrides admin.addr)")
	memLimit := fs.String("memory-limit", "", "soft limit on the Go runtime's memory, e.g. 32MiB, or \"off\" (overrides GOMEMLIMIT and memory_limit; default 32MiB)")
	procsFlag := fs.String("procs", "", "threads running Go code at once, e.g. 2, or \"auto\" for one per CPU (overrides GOMAXPROCS and procs; default 1)")
	demoOffset := fs.Int("demo-port-offset", 0, "the demo only: add N to every port it uses (two demos side by side)")
	var lf logFlags
	lf.register(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ferry run:", err)
		return 2
	}

	var cfg *router.Config
	if *file == "" {
		demo, derr := offsetDemo(examples.Demo, *demoOffset)
		if derr == nil {
			derr = checkDemoPorts(*demoOffset, *adminAddr)
		}
		if derr != nil {
			fmt.Fprintln(stderr, "ferry run:", derr)
			return 1
		}
		logger.Info("no -c given: running the embedded demo (examples/demo.yaml)", "port_offset", *demoOffset)
		cfg, err = router.Load("demo.yaml (embedded)", demo, conf.Resolver{})
	} else {
		if *demoOffset != 0 {
			fmt.Fprintln(stderr, "ferry run: --demo-port-offset applies to the embedded demo only, not to -c FILE")
			return 2
		}
		cfg, err = router.LoadFile(*file)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logWarnings(logger, cfg)
	override := func(c *router.Config) {
		if *dataDir != "" {
			c.DataDir = *dataDir
		}
		if *adminAddr != "" {
			c.Admin.Addr = *adminAddr
		}
	}
	override(cfg)
	// The memory limit and procs are set before the pipeline starts, so
	// that start-up (a spool's index, the first batches) already runs
	// under them.
	setRuntime := func(c *router.Config) error {
		n, from, err := memoryLimit(*memLimit, c.MemoryLimit)
		if err != nil {
			return err
		}
		if from != "GOMEMLIMIT" {
			applyMemoryLimit(n)
		}
		logger.Info("memory limit", "limit", limitText(n), "from", from, "gogc", gogcText())
		threads, from, err := procs(*procsFlag, c.Procs)
		if err != nil {
			return err
		}
		if from != "GOMAXPROCS" {
			threads = applyProcs(threads)
		}
		logger.Info("procs", "procs", threads, "from", from, "cpus", runtime.NumCPU())
		return nil
	}
	if err := setRuntime(cfg); err != nil {
		fmt.Fprintln(stderr, "ferry run:", err)
		return 2
	}

	p, err := router.New(cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "ferry run:", err)
		return 1
	}
	lastLimit, lastProcs := cfg.MemoryLimit, cfg.Procs
	rl := &reloader{file: *file, p: p, logger: logger, override: override, applied: func(c *router.Config) {
		// A reload changes the runtime's settings only when the file's changed.
		if c.MemoryLimit != lastLimit || c.Procs != lastProcs {
			lastLimit, lastProcs = c.MemoryLimit, c.Procs
			_ = setRuntime(c)
		}
	}}
	var srv *admin.Server
	if cfg.Admin.Addr != "off" {
		mux := http.NewServeMux()
		mux.Handle("/", admin.Handler(p))
		mux.HandleFunc("POST /api/reload", rl.handler)
		mux.HandleFunc("/api/reload", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "reload is POST /api/reload", http.StatusMethodNotAllowed)
		})
		// Authentication, TLS and the cross-site check from admin:
		// they cover the reload route too.
		srv, err = admin.Serve(cfg.Admin, mux, logger)
		if err != nil {
			fmt.Fprintln(stderr, "ferry run:", err)
			return 1
		}
	}
	if err := p.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "ferry run:", err)
		return 1
	}
	rl.onSIGHUP(ctx)
	if *file == "" {
		printDemoPlaces(stderr, *demoOffset, *adminAddr, cfg.DataDir)
	}
	logger.Info("ferry running", "site", cfg.Site, "data_dir", cfg.DataDir, "modules", len(cfg.Modules), "routes", len(cfg.Routes))

	<-ctx.Done()
	logger.Info("shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	code := 0
	if err := p.Stop(stopCtx); err != nil {
		logger.Error("shutdown", "error", err)
		code = 1
	}
	if srv != nil {
		_ = srv.Close(stopCtx)
	}
	return code
}
