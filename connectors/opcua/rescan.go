package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
)

// ErrNodesVanished is wrapped by every VanishedError.
var ErrNodesVanished = errors.New("browsed nodes vanished")

// VanishedError names nodes a browse root found before and no longer
// finds: their tags get no more values (their monitored items stay, as
// the server may bring the nodes back).
type VanishedError struct {
	Nodes []string // NodeIds
	Tags  []string
}

// maxNamed bounds the NodeIds one error message lists.
const maxNamed = 20

func (e *VanishedError) Error() string {
	ids := e.Nodes
	more := ""
	if len(ids) > maxNamed {
		more = fmt.Sprintf(" and %d more", len(ids)-maxNamed)
		ids = ids[:maxNamed]
	}
	return fmt.Sprintf("browse: %d node(s) vanished: %s%s", len(e.Nodes), strings.Join(ids, ", "), more)
}

func (e *VanishedError) Unwrap() error { return ErrNodesVanished }

// rescan runs the browse roots again (browse_every): variables not seen
// before are added to the session's items and monitored, in the
// subscription with the fewest items or a new one; variables no longer
// found are reported once each. It leaves the configured nodes alone.
func (s *session) rescan(ctx context.Context) error {
	type hit struct {
		tag  string
		node *ua.NodeID
		mon  *MonitorConfig
		root int
	}
	var hits []hit
	b := &browser{s: s, children: map[string][]*ua.ReferenceDescription{}}
	err := s.browseRoots(ctx, b, s.c.Namespaces(), func(tag string, n *ua.NodeID, mon *MonitorConfig, root int) {
		hits = append(hits, hit{tag, n, mon, root})
	})
	if err != nil {
		if fatal(err) {
			return fmt.Errorf("browse again: %w", err)
		}
		// The nodes found before stay monitored; the next run tries again.
		s.o.logBurst("browsing again failed", slog.String("error", err.Error()))
		return nil
	}
	s.o.st.rescans.Add(1)
	known := make(map[string]bool, len(s.items))
	tags := make(map[string]bool, len(s.items))
	for _, it := range s.items {
		known[it.node.String()], tags[it.tag] = true, true
	}
	seen := make(map[string]bool, len(hits))
	var added []*item
	for _, h := range hits {
		key := h.node.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		if known[key] || tags[h.tag] {
			continue
		}
		mon := h.mon
		if mon != nil && !mon.set() {
			mon = nil
		}
		it := &item{tag: h.tag, node: h.node, handle: uint32(len(s.items) + 1), mon: mon, root: h.root}
		s.items = append(s.items, it)
		tags[h.tag] = true
		added = append(added, it)
	}
	if s.vanished == nil {
		s.vanished = map[string]bool{}
	}
	gone := &VanishedError{}
	for _, it := range s.items {
		if it.root == 0 {
			continue
		}
		key := it.node.String()
		switch {
		case !seen[key] && !s.vanished[key]:
			s.vanished[key] = true
			gone.Nodes, gone.Tags = append(gone.Nodes, key), append(gone.Tags, it.tag)
		case seen[key] && s.vanished[key]:
			delete(s.vanished, key)
			s.o.env.Logger.Info("browsed node is back", "node", key, "tag", it.tag)
		}
	}
	if len(gone.Nodes) > 0 {
		s.o.st.vanished.Add(uint64(len(gone.Nodes)))
		s.o.m.vanished.Add(float64(len(gone.Nodes)))
		s.o.env.Error(gone)
	}
	if len(added) == 0 {
		return nil
	}
	if *s.o.UnitsFromServer {
		s.serverUnits(ctx, added)
	}
	s.serverAccess(ctx, added)
	bad, err := s.monitorMore(ctx, added)
	if err != nil {
		return err
	}
	tt := &tagTable{byTag: make(map[string]*item, len(s.items))}
	for _, it := range s.items {
		tt.byTag[it.tag] = it
	}
	s.o.table.Store(tt)
	s.o.st.added.Add(uint64(len(added)))
	s.o.m.added.Add(float64(len(added)))
	s.o.st.bad.Add(int64(len(bad)))
	s.countSubs()
	s.o.env.Logger.Info("browse found new nodes: subscribed", "nodes", len(added), "refused", len(bad), "first", added[0].tag)
	if len(bad) > 0 {
		s.emitBad(ctx, bad)
	}
	return nil
}

// monitorMore creates monitored items for items found after the session
// subscribed: into the data subscription with the fewest items while it
// has room, then into new subscriptions.
func (s *session) monitorMore(ctx context.Context, items []*item) ([]badItem, error) {
	per := s.o.Subscription.MaxItemsPerSubscription
	var into *subscription
	for _, sub := range s.subs {
		if into == nil || len(sub.items) < len(into.items) {
			into = sub
		}
	}
	var bad []badItem
	if into != nil && len(into.items) < per {
		n := min(per-len(into.items), len(items))
		b, err := s.createItems(ctx, into, items[:n], true)
		if err != nil {
			return nil, err
		}
		into.items = append(into.items, items[:n]...)
		bad = append(bad, b...)
		items = items[n:]
	}
	for start := 0; start < len(items); start += per {
		sub, b, err := s.createSubscription(ctx, items[start:min(start+per, len(items))], false)
		if err != nil {
			return nil, err
		}
		s.subs[sub.id] = sub
		bad = append(bad, b...)
	}
	return bad, nil
}

// browseTicker returns the channel of the browse_every timer, nil when it
// is off.
func (s *session) browseTicker() (<-chan time.Time, func()) {
	every := s.o.BrowseEvery.D()
	if every <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}
