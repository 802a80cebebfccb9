package localbroker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ferry-gateway/ferry/bus"
)

// TestSmallReceiveWindow: an MQTT 5 subscriber that announces a small
// Receive Maximum (a client library's flow control) gets every
// QoS 1 message of a burst many times its window, and later ones too.
// mochi, left alone, sends a message queued behind the window without
// tracking it, so its acknowledgement never gives the window back: after
// twice the window, everything for that client stayed queued.
func TestSmallReceiveWindow(t *testing.T) {
	b, _, _ := start(t, func(c *Config) { c.Retain, c.QoS = false, 1 })
	nc, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1000)
	cl := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet.Topic; return true, nil },
	}})
	window := uint16(20)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: "small-window", CleanStart: true, KeepAlive: 30,
		Username: "dashboard", UsernameFlag: true, Password: []byte("dash"), PasswordFlag: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &window}}); err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(&paho.Disconnect{})
	if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "plant/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	for round := range 2 { // a burst, then more after it
		const batches = 10
		for i := range batches {
			bt := &bus.Batch{}
			for j := range 20 {
				bt.Records = append(bt.Records, bus.Record{Device: "press-1", Tag: fmt.Sprintf("r%d/b%d/t%d", round, i, j), Value: bus.Long(1), Quality: bus.Good, SourceTime: 1})
			}
			if err := b.Write(t.Context(), bt); err != nil {
				t.Fatal(err)
			}
		}
		want := (round + 1) * batches * 20
		deadline := time.After(20 * time.Second)
		for len(seen) < want {
			select {
			case topic := <-got:
				seen[topic[strings.Index(topic, "/r"):]] = true
			case <-deadline:
				t.Fatalf("round %d: %d of %d QoS 1 messages arrived through a window of %d", round, len(seen), want, window)
			}
		}
	}
}
