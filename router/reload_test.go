package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router/lvc"
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

// TestReloadIsAtomic fails a reload at each of its steps in turn: the
// previous config and its modules must run on, whole, and a reload after
// the failure must apply cleanly.
func TestReloadIsAtomic(t *testing.T) {
	next := strings.Replace(reloadBase, "tags: [{name: u, signal: counter}]", "tags: [{name: u2, signal: counter}]", 1)
	next = strings.Replace(next, "  out: {type: testcapture}\n", "  out: {type: testcapture, fail: 0}\n  fresh: {type: testcapture}\n  gen2:\n    type: generator\n    interval: 2ms\n    tags: [{name: w, signal: counter}]\n", 1)
	next = strings.Replace(next, "routes:\n", "routes:\n  - {name: extra, from: [other, gen2], to: [out, fresh]}\n", 1)
	for _, step := range []string{StepBuild, StepStop, StepStart, StepRoutes, StepSources} {
		t.Run(step, func(t *testing.T) {
			c := load(t, reloadBase)
			p := start(t, c)
			defer stop(t, p)
			recv(t, captures["out"])
			nc, err := Load("reload.yaml", []byte(next), conf.Resolver{})
			if err != nil {
				t.Fatal(err)
			}
			nc.DataDir = c.DataDir
			failed := false
			p.fault = func(s string) error {
				if s == step && !failed {
					failed = true
					return errors.New("injected")
				}
				return nil
			}
			_, err = p.Reload(t.Context(), nc)
			var re *ReloadError
			if !errors.As(err, &re) || re.Step != step {
				t.Fatalf("reload failing at %s returned %v", step, err)
			}
			p.fault = nil
			if p.Config() != c {
				t.Fatal("the new config was committed although the reload failed")
			}
			var names []string
			for _, m := range p.Status().Modules {
				names = append(names, m.Name)
			}
			if got := strings.Join(names, ","); got != "gen,other,out,spooled" {
				t.Fatalf("modules after a failed reload: %s", got)
			}
			for _, n := range names {
				waitfor.Until(t, 10*time.Second, func() bool { return statusOf(p, n).Phase == connectors.PhaseUp },
					func() string { return fmt.Sprintf("%s after the failed reload: %+v", n, statusOf(p, n)) })
			}
			// The old routes run: other's old tag reaches out, nothing of
			// the new config does.
			out := captures["out"]
			for saw := false; !saw; {
				for _, r := range recv(t, out).Records {
					switch {
					case r.Source == "other" && r.Tag == "u":
						saw = true
					case r.Tag == "u2" || r.Source == "gen2":
						t.Fatalf("a record of the new config got through: %+v", r)
					}
				}
			}
			evs := p.Events(0)
			if last := evs[len(evs)-1]; last.Kind != connectors.EventReload || !strings.Contains(last.Error, step) {
				t.Fatalf("last event %+v, want the failed reload naming step %s", last, step)
			}
			// Nothing was left half-applied: the same reload now goes through.
			nc, _ = Load("reload.yaml", []byte(next), conf.Resolver{})
			nc.DataDir = c.DataDir
			res, err := p.Reload(t.Context(), nc)
			if err != nil {
				t.Fatalf("reload after the failed one: %v", err)
			}
			if len(res.Added) != 2 || len(res.Restarted) != 2 {
				t.Fatalf("reload result %+v", res)
			}
			for _, n := range []string{"fresh", "gen2"} {
				waitfor.Until(t, 10*time.Second, func() bool { return statusOf(p, n).Phase == connectors.PhaseUp },
					func() string { return fmt.Sprintf("%s after the reload: %+v", n, statusOf(p, n)) })
			}
			recv(t, captures["fresh"])
		})
	}
}

// A reload whose caller goes away (an HTTP client disconnecting) still
// runs to its end.
func TestReloadOutlivesItsCaller(t *testing.T) {
	c := load(t, reloadBase)
	p := start(t, c)
	defer stop(t, p)
	next := strings.Replace(reloadBase, "  out: {type: testcapture}\n", "  out: {type: testcapture}\n  fresh: {type: testcapture}\n", 1)
	next = strings.Replace(next, "to: [out, spooled]", "to: [out, spooled, fresh]", 1)
	nc, err := Load("reload.yaml", []byte(next), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	nc.DataDir = c.DataDir
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Reload(ctx, nc); err != nil {
		t.Fatalf("a reload under a cancelled caller: %v", err)
	}
	recv(t, captures["fresh"])
}

// A source a reload removes leaves the tags view with it.
func TestReloadForgetsRemovedSourcesTags(t *testing.T) {
	c := load(t, reloadBase)
	p := start(t, c)
	defer stop(t, p)
	waitfor.Until(t, 10*time.Second, func() bool { return p.Tags().Query(lvc.Query{Source: "other"}).Matched > 0 },
		waitfor.Say("other's tags never reached the cache"))
	next := strings.Replace(reloadBase, "  other:\n    type: generator\n    interval: 2ms\n    tags: [{name: u, signal: counter}]\n", "", 1)
	next = strings.Replace(next, "from: [gen, other]", "from: gen", 1)
	nc, err := Load("reload.yaml", []byte(next), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	nc.DataDir = c.DataDir
	if _, err := p.Reload(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	if n := p.Tags().Query(lvc.Query{Source: "other"}).Matched; n != 0 {
		t.Fatalf("%d tags of the removed source still listed", n)
	}
	if p.Tags().Query(lvc.Query{Source: "gen"}).Matched == 0 {
		t.Fatal("the remaining source's tags went too")
	}
}
