package opcua

import (
	"context"
	"errors"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(t *testing.T, s *Server, opts ...gopcua.Option) *gopcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := gopcua.NewClient(s.Endpoint(), append([]gopcua.Option{gopcua.AutoReconnect(false)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func read(t *testing.T, c *gopcua.Client, nodes ...string) []*ua.DataValue {
	t.Helper()
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, n := range nodes {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.MustParseNodeID(n), AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(t.Context(), req)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return res.Results
}

func TestReadBrowseWrite(t *testing.T) {
	s := start(t, Config{Tags: 30, PerLine: 10})
	c := dial(t, s)
	res := read(t, c, s.NodeID(s.Tag(0)), s.NodeID(s.Tag(9)), s.NodeID(SetpointPath), s.NodeID("Plant/Nope"))
	if got := res[0].Value.Value(); got != Value(0, 0) {
		t.Errorf("tag 0 = %v, want %v", got, Value(0, 0))
	}
	if got := res[1].Value.Value(); got != Value(9, 0) {
		t.Errorf("tag 9 = %#v, want %#v", got, Value(9, 0))
	}
	if res[3].Status != ua.StatusBadNodeIDUnknown {
		t.Errorf("unknown node: %v", res[3].Status)
	}

	// Objects → Plant → Line01..03 and the fixed nodes.
	br, err := c.Browse(t.Context(), &ua.BrowseRequest{NodesToBrowse: []*ua.BrowseDescription{
		{NodeID: ua.NewNumericNodeID(0, id.ObjectsFolder), BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)},
		{NodeID: ua.MustParseNodeID(s.NodeID(PlantPath)), BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range br.Results[0].References {
		if r.BrowseName.Name == "Plant" {
			found = true
		}
	}
	if !found {
		t.Fatalf("Objects has no Plant: %d refs", len(br.Results[0].References))
	}
	var names []string
	for _, r := range br.Results[1].References {
		names = append(names, r.BrowseName.Name)
	}
	if len(names) != 8 { // Setpoint, Limit, Types, Boiler, Mixer, Line01..03
		t.Errorf("Plant children = %v", names)
	}

	w, err := c.Write(t.Context(), &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{
		{NodeID: ua.MustParseNodeID(s.NodeID(SetpointPath)), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(42.5)}},
		{NodeID: ua.MustParseNodeID(s.NodeID(LimitPath)), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(1.0)}},
		{NodeID: ua.MustParseNodeID(s.NodeID(SetpointPath)), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Results[0] != ua.StatusOK || w.Results[1] != ua.StatusBadNotWritable || w.Results[2] != ua.StatusBadTypeMismatch {
		t.Errorf("write results %v", w.Results)
	}
	if v, _, _ := s.Value(SetpointPath); v != 42.5 {
		t.Errorf("setpoint = %v after write", v)
	}
}

func TestSubscribeTickRestart(t *testing.T) {
	s := start(t, Config{Tags: 200})
	c := dial(t, s)
	ch := make(chan *gopcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(t.Context(), &gopcua.SubscriptionParameters{Interval: 20 * time.Millisecond}, ch)
	if err != nil {
		t.Fatal(err)
	}
	var items []*ua.MonitoredItemCreateRequest
	for i := range 200 {
		items = append(items, gopcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(s.NodeID(s.Tag(i))), ua.AttributeIDValue, uint32(i)))
	}
	items = append(items, gopcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(s.NodeID("Plant/Nope")), ua.AttributeIDValue, 999))
	res, err := sub.Monitor(t.Context(), ua.TimestampsToReturnBoth, items...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Results[200].StatusCode != ua.StatusBadNodeIDUnknown || res.Results[0].StatusCode != ua.StatusOK {
		t.Fatalf("create results: %v %v", res.Results[0].StatusCode, res.Results[200].StatusCode)
	}
	seen := collect(t, ch, 200, 0)
	if len(seen) != 200 {
		t.Fatalf("initial values for %d items", len(seen))
	}
	s.Tick()
	collect(t, ch, 200, 1)
	if st := s.Stats(); st.SessionsActive != 1 || st.Subscriptions != 1 || st.MonitoredItems != 200 {
		t.Errorf("stats %+v", st)
	}

	s.SetExtraNamespaces(2)
	if err := s.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.NamespaceIndex(); got != 3 {
		t.Errorf("namespace index after restart = %d, want 3", got)
	}
	c2 := dial(t, s)
	if v := read(t, c2, s.NodeIDURI(s.Tag(3))[0:0]+s.NodeID(s.Tag(3)))[0].Value.Value(); v != Value(3, 1) {
		t.Errorf("after restart tag 3 = %v", v)
	}
	if st := s.Stats(); st.SessionsActive != 1 || st.Restarts != 1 || st.MaxSessionsActive != 1 {
		t.Errorf("stats after restart %+v", st)
	}
}

// collect reads notifications until every one of n handles was seen at
// generation gen.
func collect(t *testing.T, ch <-chan *gopcua.PublishNotificationData, n int, gen uint64) map[uint32]bool {
	t.Helper()
	seen := map[uint32]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < n {
		select {
		case p := <-ch:
			if p.Error != nil {
				t.Fatal(p.Error)
			}
			dcn, ok := p.Value.(*ua.DataChangeNotification)
			if !ok {
				continue
			}
			for _, it := range dcn.MonitoredItems {
				if int(it.ClientHandle) < n && it.Value.Value.Value() == Value(int(it.ClientHandle), gen) {
					seen[it.ClientHandle] = true
				}
			}
		case <-deadline:
			t.Fatalf("saw %d of %d items at generation %d", len(seen), n, gen)
		}
	}
	return seen
}

func TestUserPasswordAndSecurity(t *testing.T) {
	s := start(t, Config{Tags: 5, Users: map[string]string{"op": "s3cret"}})
	eps, err := gopcua.GetEndpoints(t.Context(), s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	ep, err := gopcua.SelectEndpoint(eps, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewCertificate("urn:test:client", "client", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	opts := func(pass string) []gopcua.Option {
		return []gopcua.Option{
			gopcua.Certificate(cc.DER), gopcua.PrivateKey(cc.Key), gopcua.ApplicationURI("urn:test:client"),
			gopcua.AuthUsername("op", pass), gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName),
		}
	}
	c := dial(t, s, opts("s3cret")...)
	if v := read(t, c, s.NodeID(s.Tag(0)))[0].Value.Value(); v != Value(0, 0) {
		t.Errorf("read over SignAndEncrypt = %v", v)
	}
	bad, _ := gopcua.NewClient(s.Endpoint(), append(opts("wrong"), gopcua.AutoReconnect(false))...)
	err = bad.Connect(t.Context())
	if !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Fatalf("wrong password: %v", err)
	}
	_ = bad.Close(t.Context())
}

func TestDropSessionsAndStall(t *testing.T) {
	s := start(t, Config{Tags: 5})
	c := dial(t, s)
	s.DropSessions()
	_, err := c.Read(t.Context(), &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(s.NodeID(s.Tag(0)))}}})
	if !errors.Is(err, ua.StatusBadSessionIDInvalid) {
		t.Fatalf("read after DropSessions: %v", err)
	}
	if st := s.Stats(); st.SessionsActive != 0 || st.SessionsDropped != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestConcurrentChanges creates monitored items, reads and browses while
// values change as fast as they can: the namespace race gopcua's own
// namespaces have must not exist here (run with -race).
func TestConcurrentChanges(t *testing.T) {
	s := start(t, Config{Tags: 2000, Interval: time.Millisecond})
	done := make(chan struct{})
	errs := make(chan error, 3)
	for k := range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			c, err := gopcua.NewClient(s.Endpoint(), gopcua.AutoReconnect(false))
			if err == nil {
				err = c.Connect(ctx)
			}
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			ch := make(chan *gopcua.PublishNotificationData, 64)
			sub, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: 10 * time.Millisecond}, ch)
			if err != nil {
				errs <- err
				return
			}
			go func() {
				for range ch {
				}
			}()
			var items []*ua.MonitoredItemCreateRequest
			for i := k; i < 2000; i += 3 {
				items = append(items, gopcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(s.NodeID(s.Tag(i))), ua.AttributeIDValue, uint32(i)))
			}
			if _, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, items...); err != nil {
				errs <- err
				return
			}
			for i := range 20 {
				if _, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(s.NodeID(s.Tag(i)))}}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 3 {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Generation() == 0 {
		t.Error("values did not change during the test")
	}
}

func TestDropConnectionsAndMalform(t *testing.T) {
	s := start(t, Config{Tags: 5})
	c := dial(t, s)
	s.DropConnections()
	_, err := c.Read(t.Context(), &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(s.NodeID(s.Tag(0)))}}})
	if err == nil {
		t.Fatal("read over a dropped connection succeeded")
	}
	c2 := dial(t, s)
	s.MalformNext()
	_, err = c2.Read(t.Context(), &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(s.NodeID(s.Tag(0)))}}})
	if err == nil {
		t.Fatal("a garbled response decoded")
	}
	if st := s.Stats(); st.ConnectionsTotal < 2 {
		t.Errorf("stats %+v", st)
	}
}
