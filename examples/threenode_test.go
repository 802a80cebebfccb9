package examples_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

// TestThreeNodeExample runs the three-node example as written, in this
// process: three instances, each with an embedded NATS node, clustered with
// JetStream replicated three ways, a simulated press and a simulated cloud.
// Exactly one instance polls the press; when it stops, another takes over
// and records keep reaching the cloud.
func TestThreeNodeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	pc := simmodbus.DemoConfig()
	pc.Addr = "127.0.0.1:0"
	press, err := simmodbus.Start(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer press.Close()
	c, err := cloud.Start(t.Context(), cloud.Config{HTTPAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// One free port for each fixed one, the same in all three files.
	ports := map[string]string{"5020": hostPort(press.Addr())}
	for _, p := range []string{"4222", "4223", "4224", "6222", "6223", "6224", "8081", "8082", "8083"} {
		ports[p] = freePort(t)
	}
	dir := t.TempDir()
	cfgs := make([]*router.Config, 3)
	for i := range cfgs {
		file := filepath.Join("three-node", "node"+string(rune('1'+i))+".yaml")
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := regexp.MustCompile(`127\.0\.0\.1:(\d{4})\b`).ReplaceAllStringFunc(string(data), func(s string) string {
			if p, ok := ports[s[len("127.0.0.1:"):]]; ok {
				return "127.0.0.1:" + p
			}
			return s
		})
		env := map[string]string{"FERRY_DATA": filepath.Join(dir, "node"+string(rune('1'+i))), "CLOUD_URL": "tcp://" + c.MQTTAddr()}
		cfg, err := router.Load(file, []byte(text), conf.Resolver{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Admin.Addr = "off"
		cfgs[i] = cfg
	}

	// The nodes start together: each waits for a quorum of the cluster
	// before its streams can be made.
	nodes := make([]*router.Pipeline, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := router.New(cfgs[i], nil)
			if err == nil {
				err = p.Start(t.Context())
			}
			nodes[i], errs[i] = p, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node%d: %v", i+1, err)
		}
	}
	running := map[int]bool{0: true, 1: true, 2: true}
	defer func() {
		for i := range running {
			stopNode(t, nodes[i])
		}
	}()

	owner := func() int {
		o := -1
		for i := range running {
			for _, m := range nodes[i].Status().Modules {
				if m.Name == "press" && m.Lease != nil && m.Lease.Mine {
					if o >= 0 {
						t.Fatalf("press owned by node%d and node%d at once", o+1, i+1)
					}
					o = i
				}
			}
		}
		return o
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	rep, err := c.Wait(ctx, func(r cloud.Report) bool { return r.Sources["press"].Unique >= 30 })
	if err != nil {
		t.Fatal(err)
	}
	first := waitOwner(t, owner)
	stopNode(t, nodes[first])
	delete(running, first)
	next := waitOwner(t, owner)
	if next == first {
		t.Fatal("the stopped node still owns the press")
	}
	if _, err := c.Wait(ctx, func(r cloud.Report) bool { return r.Sources["press"].Unique >= rep.Sources["press"].Unique+30 }); err != nil {
		t.Fatalf("no records after node%d took over from node%d: %v", next+1, first+1, err)
	}
}

func waitOwner(t *testing.T, owner func() int) int {
	t.Helper()
	o := -1
	waitfor.Until(t, 60*time.Second, func() bool { o = owner(); return o >= 0 }, waitfor.Say("no node owns the press"))
	return o
}

func stopNode(t *testing.T, p *router.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return hostPort(ln.Addr().String())
}

func hostPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
