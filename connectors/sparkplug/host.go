package sparkplug

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
)

// Host is the host-ingest source: it follows every edge node of its
// groups from their births and turns their metrics into records.
type Host struct {
	HostConfig `yaml:",inline"`

	env        *connectors.Env
	m          *metrics
	nodeName   *strings.Replacer // device template for node-level metrics
	deviceName func(group, node, device string) string

	// Owned by the link goroutine.
	nodes map[string]*node
	batch bus.Batch
}

// node is what the host knows of one edge node.
type node struct {
	group, name string
	born        bool
	bdSeq       uint64
	next        uint8 // the seq expected next
	stale       bool  // a gap or an unknown alias: tags UNCERTAIN until the rebirth
	asked       time.Time
	byAlias     map[uint64]*hostMetric
	byName      map[string]*hostMetric // key: device + "\x00" + name
	devices     map[string]bool        // born devices
}

type hostMetric struct {
	device, name string
	dt           spb.DataType
	unit         string
	v            bus.Value
	ts           int64
}

// Outputs implements connectors.Source.
func (h *Host) Outputs() []string { return []string{connectors.DefaultOutput} }

// Start starts the link loop.
func (h *Host) Start(_ context.Context, env *connectors.Env) error {
	h.env, h.m = env, newMetrics(env)
	h.nodes = map[string]*node{}
	tmpl := h.Device
	node := strings.NewReplacer("/{device}", "", "{device}/", "", "{device}", "")
	nodeTmpl := node.Replace(tmpl)
	h.deviceName = func(group, n, device string) string {
		t := tmpl
		if device == "" {
			t = nodeTmpl
		}
		return strings.NewReplacer("{group}", group, "{node}", n, "{device}", device).Replace(t)
	}
	if h.ClientID == "" {
		h.ClientID = "ferry-" + env.Site + "-" + env.Name
		if env.Instance != "" {
			h.ClientID += "-" + env.Instance
		}
	}
	env.Connecting()
	env.Go("link", h.link)
	return nil
}

func stateJSON(online bool, ts int64) []byte {
	b, _ := json.Marshal(map[string]any{"online": online, "timestamp": ts})
	return b
}

// link keeps one connection: subscribe to the groups (and, as a host
// application, to its own STATE), announce STATE online, and ingest.
func (h *Host) link(ctx context.Context) error {
	bo := connectors.Backoff{Max: h.ReconnectMax.D()}
	for ctx.Err() == nil {
		in := make(chan message, 1024)
		var w will
		connectedAt := time.Now().UnixMilli()
		if h.HostID != "" {
			// tck-id-operational-behavior-host-application-connect-will*
			w = will{topic: StateTopic(h.HostID), payload: stateJSON(false, connectedAt), retain: true}
		}
		c, err := dial(ctx, &h.Link, h.ClientID, w, in)
		if err == nil {
			err = h.subscribe(c, connectedAt)
		}
		if err != nil {
			h.env.Down(fmt.Errorf("connect %s: %w", h.URL, err))
			if connectors.Sleep(ctx, bo.Next()) != nil {
				return nil
			}
			continue
		}
		h.env.Up()
		err = h.ingest(ctx, c, in, connectedAt)
		if ctx.Err() != nil {
			if h.HostID != "" {
				// tck-id-operational-behavior-host-application-termination
				_ = c.publish(StateTopic(h.HostID), 1, true, stateJSON(false, time.Now().UnixMilli()))
			}
			c.close(100 * time.Millisecond)
			return nil
		}
		h.env.Down(err)
		if connectors.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
	return nil
}

// subscribe subscribes before the STATE birth
// (tck-id-message-flow-phid-sparkplug-subscription).
func (h *Host) subscribe(c *client, connectedAt int64) error {
	var filters []string
	if h.HostID != "" {
		filters = append(filters, StateTopic(h.HostID))
	}
	for _, g := range h.Groups {
		filters = append(filters, Namespace+"/"+g+"/#")
	}
	for _, f := range filters {
		if err := c.subscribe(f, 1); err != nil {
			c.close(0)
			return err
		}
	}
	if h.HostID != "" {
		if err := c.publish(StateTopic(h.HostID), 1, true, stateJSON(true, connectedAt)); err != nil {
			c.close(0)
			return err
		}
	}
	return nil
}

func (h *Host) ingest(ctx context.Context, c *client, in <-chan message, connectedAt int64) error {
	tick := time.NewTicker(h.BatchInterval.D())
	defer tick.Stop()
	defer h.flush(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done():
			return fmt.Errorf("connection to %s lost", h.URL)
		case <-tick.C:
			h.flush(ctx)
		case msg := <-in:
			h.handle(c, msg, connectedAt)
			if len(h.batch.Records) >= h.BatchSize {
				h.flush(ctx)
			}
		}
	}
}

func (h *Host) flush(ctx context.Context) {
	if len(h.batch.Records) == 0 {
		return
	}
	if err := h.env.Emit(ctx, &h.batch); err != nil {
		h.env.Dropped(len(h.batch.Records), "emit failed", err)
	}
	h.batch.Reset()
}

func (h *Host) handle(c *client, msg message, connectedAt int64) {
	t, err := ParseTopic(msg.topic)
	if err != nil {
		h.env.Error(err)
		return
	}
	if t.Verb == STATE {
		var s hostState
		// Someone said this host is offline (a stale will): it is not
		// (tck-id-message-flow-hid-sparkplug-state-message-delivered).
		if t.HostID == h.HostID && json.Unmarshal(msg.payload, &s) == nil && s.Online != nil && !*s.Online {
			c.send(StateTopic(h.HostID), 1, true, stateJSON(true, connectedAt))
		}
		return
	}
	if t.Verb == NCMD || t.Verb == DCMD {
		return // commands to edge nodes, not data
	}
	h.m.messages.WithLabelValues(t.Verb).Inc()
	p, err := Decode(msg.payload)
	if err != nil {
		h.env.Error(fmt.Errorf("%s: %w", msg.topic, err))
		return
	}
	key := t.Group + "/" + t.Node
	n := h.nodes[key]
	if n == nil {
		n = &node{group: t.Group, name: t.Node}
		h.nodes[key] = n
	}
	switch t.Verb {
	case NBIRTH:
		h.nbirth(n, p)
	case NDEATH:
		h.ndeath(n, p)
	case DBIRTH, NDATA, DDATA, DDEATH:
		if !n.born {
			// Data of a node whose birth this host did not see.
			h.rebirth(c, n)
			return
		}
		if !h.inSeq(c, n, p) {
			if t.Verb == DBIRTH {
				break // a birth is whole by itself: take it
			}
		}
		switch t.Verb {
		case DBIRTH:
			h.dbirth(n, t.Device, p)
		case DDEATH:
			h.dead(n, t.Device, p.GetTimestamp())
			delete(n.devices, t.Device)
		default:
			h.data(c, n, t.Device, p)
		}
	}
}

// inSeq checks a message's seq against the one expected; a gap asks for a
// rebirth and marks the node's tags UNCERTAIN until it comes.
func (h *Host) inSeq(c *client, n *node, p *spb.Payload) bool {
	s := uint8(p.GetSeq())
	ok := p.Seq != nil && p.GetSeq() <= 255 && s == n.next
	n.next = s + 1
	if ok {
		return true
	}
	h.m.gaps.Inc()
	h.env.Error(fmt.Errorf("%s/%s: seq %d where %d was due: rebirth requested", n.group, n.name, p.GetSeq(), s))
	h.suspect(c, n)
	return false
}

// suspect marks every tag of n UNCERTAIN, once, and asks for a rebirth.
func (h *Host) suspect(c *client, n *node) {
	if !n.stale {
		n.stale = true
		now := time.Now().UnixNano()
		for _, m := range n.byName {
			h.add(n, m, m.v, bus.Uncertain, now, false)
		}
	}
	h.rebirth(c, n)
}

// rebirth sends a rebirth request, at most one per rebirth_timeout per node.
func (h *Host) rebirth(c *client, n *node) {
	if time.Since(n.asked) < h.RebirthTimeout.D() {
		return
	}
	n.asked = time.Now()
	p := &spb.Payload{Timestamp: proto.Uint64(uint64(time.Now().UnixMilli())), Metrics: []*spb.Payload_Metric{{
		Name: proto.String(metricRebirth), Datatype: proto.Uint32(uint32(spb.DataType_Boolean)),
		Value: &spb.Payload_Metric_BooleanValue{BooleanValue: true},
	}}}
	b, _ := proto.Marshal(p)
	c.send(nodeTopic(n.group, NCMD, n.name), 0, false, b)
	h.m.rebirths.Inc()
}

func (h *Host) nbirth(n *node, p *spb.Payload) {
	n.born, n.stale = true, false
	n.asked = time.Time{}
	n.next = uint8(p.GetSeq()) + 1
	n.byAlias, n.byName, n.devices = map[uint64]*hostMetric{}, map[string]*hostMetric{}, map[string]bool{}
	for _, pm := range p.Metrics {
		if pm.GetName() == metricBdSeq {
			if u, ok := rawInt(pm); ok {
				n.bdSeq = u
			}
			continue
		}
		h.born(n, "", pm, p.GetTimestamp())
	}
}

func (h *Host) dbirth(n *node, device string, p *spb.Payload) {
	for k, m := range n.byName {
		if m.device == device {
			delete(n.byName, k)
		}
	}
	for a, m := range n.byAlias {
		if m.device == device {
			delete(n.byAlias, a)
		}
	}
	n.devices[device] = true
	for _, pm := range p.Metrics {
		h.born(n, device, pm, p.GetTimestamp())
	}
}

// born registers a metric of a birth and emits its value.
func (h *Host) born(n *node, device string, pm *spb.Payload_Metric, payloadTS uint64) {
	name := pm.GetName()
	if name == "" || strings.HasPrefix(name, "Node Control/") {
		return
	}
	m := &hostMetric{device: device, name: name, dt: spb.DataType(pm.GetDatatype())}
	q, unit, _ := properties(pm)
	m.unit = unit
	n.byName[device+"\x00"+name] = m
	if pm.Alias != nil {
		n.byAlias[pm.GetAlias()] = m
	}
	h.value(n, m, pm, q, payloadTS)
}

// value converts and emits one metric's value.
func (h *Host) value(n *node, m *hostMetric, pm *spb.Payload_Metric, q bus.Quality, payloadTS uint64) {
	v, err := valueOf(pm, m.dt)
	if err != nil {
		h.m.skipped.WithLabelValues("datatype").Inc()
		h.env.Error(fmt.Errorf("%s/%s %s: %w", n.group, n.name, m.name, err))
		return
	}
	ts := pm.GetTimestamp()
	if ts == 0 {
		ts = payloadTS
	}
	if n.stale && q == bus.Good {
		q = bus.Uncertain
	}
	m.v = v
	h.add(n, m, v, q, int64(ts)*1e6, pm.GetIsHistorical())
}

func (h *Host) add(n *node, m *hostMetric, v bus.Value, q bus.Quality, ts int64, historical bool) {
	r := bus.Record{
		Device: h.deviceName(n.group, n.name, m.device), Tag: m.name,
		Value: v, Quality: q, SourceTime: ts, Unit: m.unit,
	}
	if historical {
		r.Attrs = map[string]string{"sparkplug_historical": "true"}
	}
	h.batch.Records = append(h.batch.Records, r)
}

func (h *Host) data(c *client, n *node, device string, p *spb.Payload) {
	for _, pm := range p.Metrics {
		var m *hostMetric
		if pm.Alias != nil {
			m = n.byAlias[pm.GetAlias()]
		} else {
			m = n.byName[device+"\x00"+pm.GetName()]
		}
		if m == nil || m.device != device {
			h.m.gaps.Inc()
			h.env.Error(fmt.Errorf("%s/%s: metric %q alias %d is in no birth: rebirth requested", n.group, n.name, pm.GetName(), pm.GetAlias()))
			h.suspect(c, n)
			continue
		}
		q, _, _ := properties(pm)
		h.value(n, m, pm, q, p.GetTimestamp())
	}
}

// ndeath marks the node's tags BAD, if it is the death of the session the
// host knows (a will of an older session is not news).
func (h *Host) ndeath(n *node, p *spb.Payload) {
	for _, pm := range p.Metrics {
		if pm.GetName() == metricBdSeq {
			if u, ok := rawInt(pm); ok && n.born && u != n.bdSeq {
				return
			}
		}
	}
	if !n.born {
		return
	}
	h.dead(n, "", p.GetTimestamp())
	for d := range n.devices {
		h.dead(n, d, p.GetTimestamp())
	}
	n.born = false
}

// dead emits every tag of a device (or, with device "", of the node) as BAD.
func (h *Host) dead(n *node, device string, ts uint64) {
	t := int64(ts) * 1e6
	if t == 0 {
		t = time.Now().UnixNano()
	}
	for _, m := range n.byName {
		if m.device == device {
			h.add(n, m, bus.Null(), bus.Bad, t, false)
		}
	}
}

// Stop: the link loop publishes STATE offline and disconnects when the
// Env's context ends.
func (h *Host) Stop(context.Context) error { return nil }

var _ connectors.Source = (*Host)(nil)
