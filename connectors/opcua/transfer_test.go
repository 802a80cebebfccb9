package opcua

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// wantCounter reads until the counter record of the next batch that has
// one, and fails unless it holds the value of generation gen: a BAD
// record or a skipped value in between fails the test.
func wantCounter(t *testing.T, r *rig, gen uint64) {
	t.Helper()
	want := expect(0, gen).Double()
	r.until(t, 15*time.Second, fmt.Sprintf("the value of generation %d", gen), func(rec bus.Record) bool {
		if rec.Tag != "counter" {
			return false
		}
		if rec.Quality != bus.Good || rec.Value.Double() != want {
			t.Fatalf("counter = %v (quality %v, status 0x%08X), want %v (generation %d)", rec.Value, rec.Quality, rec.Status, want, gen)
		}
		return true
	})
}

// poll waits for cond, failing after within.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}

// TestTransferAfterBlip: two NotificationMessages are sent into a
// connection that then breaks (the sim numbers them and keeps them for
// Republish, the client never sees them). The next session takes the
// subscription over with TransferSubscriptions, learns the missing
// numbers from AvailableSequenceNumbers and republishes them: every
// counter value arrives, in order, with no BAD record and no gap.
func TestTransferAfterBlip(t *testing.T) {
	s, r := counter(t, simopcua.Config{})
	wantCounter(t, r, 0)
	s.Tick()
	wantCounter(t, r, 1)
	s.LosePublish(2)
	for i := range uint64(2) {
		s.Tick()
		poll(t, 10*time.Second, "the sim losing a message", func() bool { return s.Stats().NotificationsLost == i+1 })
	}
	s.DropConnections()
	wantCounter(t, r, 2)
	wantCounter(t, r, 3)
	s.Tick()
	wantCounter(t, r, 4)

	st, sst := r.c.Stats(), s.Stats()
	if st.Sessions != 2 || st.Transferred != 1 || st.TransferFailed != 0 {
		t.Errorf("sessions %d, transferred %d, created again %d; want 2, 1, 0", st.Sessions, st.Transferred, st.TransferFailed)
	}
	if sst.SubscriptionsCreated != 1 || sst.SubscriptionsTransferred != 1 {
		t.Errorf("sim: subscriptions created %d, transferred %d; want 1, 1", sst.SubscriptionsCreated, sst.SubscriptionsTransferred)
	}
	if st.Republished != 2 || st.NotificationGaps != 0 {
		t.Errorf("republished %d, gaps %d; want 2, 0", st.Republished, st.NotificationGaps)
	}
	if m := gathered(t, r, "ferry_opcua_subscriptions_transferred_total"); m != 1 {
		t.Errorf("ferry_opcua_subscriptions_transferred_total = %v, want 1", m)
	}
	if g := gathered(t, r, "ferry_opcua_notification_gaps_total"); g != 0 {
		t.Errorf("ferry_opcua_notification_gaps_total = %v, want 0", g)
	}
}

// TestTransferRefused: the server forgot the session and its
// subscriptions, so the transfer fails; the subscription is created
// again, the outage is a BAD record, and values flow again.
func TestTransferRefused(t *testing.T) {
	s, r := counter(t, simopcua.Config{})
	wantCounter(t, r, 0)
	s.DropSessions()
	r.until(t, 15*time.Second, "the BAD record of the outage", func(rec bus.Record) bool {
		return rec.Tag == "counter" && rec.Quality == bus.Bad
	})
	poll(t, 10*time.Second, "the subscription created again", func() bool { return s.Stats().SubscriptionsCreated == 2 })
	s.Tick()
	r.until(t, 15*time.Second, "generation 1 after the new subscription", func(rec bus.Record) bool {
		return rec.Tag == "counter" && rec.Quality == bus.Good && rec.Value.Double() == expect(0, 1).Double()
	})
	if st := r.c.Stats(); st.Transferred != 0 || st.TransferFailed != 1 {
		t.Errorf("transferred %d, created again %d; want 0, 1", st.Transferred, st.TransferFailed)
	}
}
