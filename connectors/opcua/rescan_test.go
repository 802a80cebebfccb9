package opcua

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// TestBrowseEvery: with browse_every, a variable that appears under a
// browse root is subscribed without a restart (in the same session), and
// one that vanishes is reported with its NodeId and counted.
func TestBrowseEvery(t *testing.T) {
	s := sim(t, simopcua.Config{Tags: 4, PerLine: 4})
	late, doomed := s.Tag(3), s.Tag(1)
	if err := s.RemoveNode(late); err != nil {
		t.Fatal(err)
	}
	c := decode(t, config(s, fast+`
browse:
  - root: "`+s.NodeIDURI("Plant/Line01")+`"
    prefix: line/
browse_every: 1s
`))
	r := run(t, c)
	tag := func(path string) string { return "line/" + strings.TrimPrefix(path, "Plant/Line01/") }
	r.until(t, 10*time.Second, "the first values", func(rec bus.Record) bool {
		if rec.Tag == tag(late) {
			t.Fatalf("%s was subscribed before it was added", rec.Tag)
		}
		return rec.Tag == tag(s.Tag(2))
	})

	if err := s.AddNode(late); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "a browse run subscribing the new node", func() bool { return r.c.Stats().NodesAdded == 1 })
	s.Tick()
	r.until(t, 10*time.Second, "a value of the added node", func(rec bus.Record) bool {
		return rec.Tag == tag(late) && rec.Quality == bus.Good && rec.Value.Equal(expect(3, s.Generation()))
	})

	if err := s.RemoveNode(doomed); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "the vanished node reported", func() bool { return r.c.Stats().NodesVanished == 1 })
	last := r.Env.State().Snapshot().LastError
	if !strings.Contains(last, s.NodeID(doomed)) || !strings.Contains(last, "1 node(s) vanished") {
		t.Errorf("last error %q does not name the vanished node %s", last, s.NodeID(doomed))
	}
	var ve *VanishedError
	if !errors.As(&VanishedError{Nodes: []string{"x"}}, &ve) || !errors.Is(ve, ErrNodesVanished) {
		t.Error("VanishedError does not match ErrNodesVanished")
	}
	st := r.c.Stats()
	if st.Sessions != 1 || st.NodesAdded != 1 || st.NodesVanished != 1 {
		t.Errorf("sessions %d, added %d, vanished %d; want 1, 1, 1 (stats %+v)", st.Sessions, st.NodesAdded, st.NodesVanished, st)
	}
	if a, v := gathered(t, r, "ferry_opcua_browse_nodes_added_total"), gathered(t, r, "ferry_opcua_browse_nodes_vanished_total"); a != 1 || v != 1 {
		t.Errorf("metrics added %v, vanished %v; want 1, 1", a, v)
	}
	// Reported once, not at every run.
	runs := st.BrowseRuns
	poll(t, 10*time.Second, "another browse run", func() bool { return r.c.Stats().BrowseRuns > runs })
	if n := r.c.Stats().NodesVanished; n != 1 {
		t.Errorf("the vanished node was reported %d times", n)
	}
}
