package opcua

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

func send[T ua.Response](t *testing.T, c *gopcua.Client, req ua.Request) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var out T
	// A ServiceFault reaches the handler too; the error carries its status.
	err := c.Send(ctx, req, func(v ua.Response) error {
		r, ok := v.(T)
		if !ok {
			return fmt.Errorf("response %T to %T", v, req)
		}
		out = r
		return nil
	})
	return out, err
}

// TestRepublish: a lost NotificationMessage is announced by the next
// keep-alive (the next number) and AvailableSequenceNumbers, and
// Republish returns it until it is acknowledged.
func TestRepublish(t *testing.T) {
	s := start(t, Config{Tags: 1, PerLine: 1})
	c := dial(t, s)
	sub, err := send[*ua.CreateSubscriptionResponse](t, c, &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: 20, RequestedMaxKeepAliveCount: 2, RequestedLifetimeCount: 100, PublishingEnabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = send[*ua.CreateMonitoredItemsResponse](t, c, &ua.CreateMonitoredItemsRequest{
		SubscriptionID: sub.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{{
			ItemToMonitor:       &ua.ReadValueID{NodeID: ua.MustParseNodeID(s.NodeID(s.Tag(0))), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode:      ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1, SamplingInterval: -1, QueueSize: 1, Filter: ua.NewExtensionObject(nil)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(acks ...uint32) *ua.PublishResponse {
		t.Helper()
		req := &ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}}
		for _, a := range acks {
			req.SubscriptionAcknowledgements = append(req.SubscriptionAcknowledgements, &ua.SubscriptionAcknowledgement{SubscriptionID: sub.SubscriptionID, SequenceNumber: a})
		}
		res, err := send[*ua.PublishResponse](t, c, req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := publish()
	if first.NotificationMessage.SequenceNumber != 1 || len(first.NotificationMessage.NotificationData) != 1 {
		t.Fatalf("first message: %+v", first.NotificationMessage)
	}

	// The change waits for a Publish request; the message it makes with
	// that request is lost, and the request is answered by the keep-alive
	// that follows.
	s.LosePublish(1)
	s.Tick()
	ka := publish(1)
	if s.Stats().NotificationsLost != 1 {
		t.Fatalf("%d messages lost, want 1", s.Stats().NotificationsLost)
	}
	if m := ka.NotificationMessage; m.SequenceNumber != 3 || len(m.NotificationData) != 0 {
		t.Errorf("keep-alive after the loss: seq %d with %d notifications, want seq 3 and none", m.SequenceNumber, len(m.NotificationData))
	}
	if !slices.Equal(ka.AvailableSequenceNumbers, []uint32{2}) || !slices.Equal(ka.Results, []ua.StatusCode{ua.StatusOK}) {
		t.Errorf("available %v, ack results %v; want [2] and [Good]", ka.AvailableSequenceNumbers, ka.Results)
	}

	rep, err := send[*ua.RepublishResponse](t, c, &ua.RepublishRequest{SubscriptionID: sub.SubscriptionID, RetransmitSequenceNumber: 2})
	if err != nil {
		t.Fatalf("republish 2: %v", err)
	}
	dcn, _ := rep.NotificationMessage.NotificationData[0].Value.(*ua.DataChangeNotification)
	if rep.NotificationMessage.SequenceNumber != 2 || dcn == nil || dcn.MonitoredItems[0].Value.Value.Value() != Value(0, 1) {
		t.Errorf("republished %+v, want seq 2 with generation 1", rep.NotificationMessage)
	}
	if _, err := send[*ua.RepublishResponse](t, c, &ua.RepublishRequest{SubscriptionID: sub.SubscriptionID, RetransmitSequenceNumber: 1}); !errors.Is(err, ua.StatusBadMessageNotAvailable) {
		t.Errorf("republish of an acknowledged message: %v, want BadMessageNotAvailable", err)
	}
	if st := s.Stats(); st.Republished != 1 {
		t.Errorf("Republished = %d, want 1", st.Republished)
	}
}

func TestRepublishUnsupported(t *testing.T) {
	s := start(t, Config{Tags: 1, PerLine: 1, NoRepublish: true})
	c := dial(t, s)
	sub, err := send[*ua.CreateSubscriptionResponse](t, c, &ua.CreateSubscriptionRequest{RequestedPublishingInterval: 20, RequestedMaxKeepAliveCount: 2, PublishingEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send[*ua.RepublishResponse](t, c, &ua.RepublishRequest{SubscriptionID: sub.SubscriptionID, RetransmitSequenceNumber: 1}); !errors.Is(err, ua.StatusBadServiceUnsupported) {
		t.Errorf("republish: %v, want BadServiceUnsupported", err)
	}
}
