package router

import (
	"fmt"
	"testing"

	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// TestSinkSpoolWindowDefault: store_and_forward: true gives a sink's spool
// a window that pipelines (issue 15: window 1 drained 22 batches/s against
// stock mosquitto), on both backends; a window the file sets is kept.
func TestSinkSpoolWindowDefault(t *testing.T) {
	for _, c := range []struct {
		bus, sf string
		want    int
	}{
		{"", "true", spool.DefaultSinkWindow},
		{"", "{quota: 64MiB}", spool.DefaultSinkWindow},
		{"", "{window: 1}", 1},
		{"", "{window: 8}", 8},
		{"bus: {type: nats, url: \"nats://127.0.0.1:4222\", instance: a}\n", "{backend: jetstream}", spool.DefaultSinkWindow},
		{"bus: {type: nats, url: \"nats://127.0.0.1:4222\", instance: a}\n", "{backend: jetstream, window: 4}", 4},
	} {
		cfg, err := Load("f.yaml", []byte(fmt.Sprintf(`%sconnectors:
  gen: {type: generator, tags: [{name: t}]}
  cloud:
    type: mqtt
    url: tcp://127.0.0.1:1883
    store_and_forward: %s
routes:
  - {from: gen, to: cloud}
`, c.bus, c.sf)), conf.Resolver{})
		if err != nil {
			t.Fatalf("%s: %v", c.sf, err)
		}
		var got int
		for _, m := range cfg.Modules {
			if m.Name == "cloud" && m.Spool != nil {
				got = m.Spool.Window
			}
		}
		if got != c.want {
			t.Errorf("store_and_forward: %s: window %d, want %d", c.sf, got, c.want)
		}
	}
}
