package router

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

const reloadBase = `
connectors:
  gen:
    type: generator
    interval: 2ms
    tags: [{name: t, signal: counter}]
  other:
    type: generator
    interval: 2ms
    tags: [{name: u, signal: counter}]
  out: {type: testcapture}
  spooled:
    type: testcapture
    store_and_forward: true
routes:
  - {name: main, from: [gen, other], to: [out, spooled]}
`

func statusOf(p *Pipeline, name string) connectors.Snapshot {
	for _, m := range p.Status().Modules {
		if m.Name == name {
			return m.Snapshot
		}
	}
	return connectors.Snapshot{}
}

// TestReloadRestartsOnlyWhatChanged changes one source and adds a route: the
// other modules keep their state and uptime, data keeps flowing through the
// unchanged source with consecutive sequence numbers, and the spooled sink
// keeps its queue.
func TestReloadRestartsOnlyWhatChanged(t *testing.T) {
	c := load(t, reloadBase)
	p := start(t, c)
	defer stop(t, p)
	out := captures["out"]
	recv(t, out)
	before := map[string]connectors.Snapshot{}
	for _, n := range []string{"gen", "other", "out", "spooled"} {
		before[n] = statusOf(p, n)
	}

	next := strings.Replace(reloadBase, "tags: [{name: u, signal: counter}]", "tags: [{name: u2, signal: counter}]", 1)
	next = strings.Replace(next, "routes:\n", "routes:\n  - {name: extra, from: other, tags: u2, to: out}\n", 1)
	nc, err := Load("reload.yaml", []byte(next), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	nc.DataDir = c.DataDir
	res, err := p.Reload(t.Context(), nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Restarted) != 1 || res.Restarted[0] != "other" || len(res.Added) != 0 || len(res.Removed) != 0 || res.Routes != 2 {
		t.Fatalf("reload result %+v", res)
	}
	for _, n := range []string{"gen", "out", "spooled"} {
		if got := statusOf(p, n); !got.Since.Equal(before[n].Since) || got.Phase != connectors.PhaseUp {
			t.Errorf("%s was restarted: %+v → %+v", n, before[n], got)
		}
	}
	if !statusOf(p, "other").Since.After(before["other"].Since) {
		t.Error("changed module was not restarted")
	}
	// Data flows after the reload: the new tag through both routes, and gen
	// with no gap in its sequence.
	var lastGen uint64
	sawU2, deadline := 0, time.Now().Add(10*time.Second)
	for (sawU2 < 2 || lastGen == 0) && time.Now().Before(deadline) {
		b := recv(t, out)
		for _, r := range b.Records {
			switch r.Source {
			case "gen":
				if lastGen != 0 && r.Seq != lastGen+1 {
					t.Fatalf("gen seq jumped %d → %d across the reload", lastGen, r.Seq)
				}
				lastGen = r.Seq
			case "other":
				if r.Tag == "u2" {
					sawU2++
				}
			}
		}
	}
	if sawU2 < 2 {
		t.Fatal("the reloaded source's data did not reach both routes")
	}
}

// TestReloadRemovesAndAdds removes a sink and adds one.
func TestReloadRemovesAndAdds(t *testing.T) {
	c := load(t, reloadBase)
	p := start(t, c)
	defer stop(t, p)
	next := strings.Replace(reloadBase, "  spooled:\n    type: testcapture\n    store_and_forward: true\n", "  fresh: {type: testcapture}\n", 1)
	next = strings.Replace(next, "to: [out, spooled]", "to: [out, fresh]", 1)
	nc, err := Load("reload.yaml", []byte(next), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	nc.DataDir = c.DataDir
	res, err := p.Reload(t.Context(), nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0] != "fresh" || len(res.Removed) != 1 || res.Removed[0] != "spooled" {
		t.Fatalf("reload result %+v", res)
	}
	recv(t, captures["fresh"])
	for _, m := range p.Status().Modules {
		if m.Name == "spooled" {
			t.Fatal("removed module still listed")
		}
	}
}
