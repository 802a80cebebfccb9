package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/ferry-gateway/ferry/connectors/all"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// rig is a cloud behind a flaky link.
type rig struct {
	cloud *cloud.Cloud
	link  *flaky.Proxy
}

func newRig(t *testing.T) *rig {
	t.Helper()
	c, err := cloud.Start(t.Context(), cloud.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	l, err := flaky.Start(t.Context(), flaky.Config{Target: c.MQTTAddr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &rig{cloud: c, link: l}
}

func pipeline(t testing.TB, yaml string) *router.Pipeline {
	t.Helper()
	cfg, err := router.Load("e2e.yaml", []byte(yaml), conf.Resolver{})
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	p, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}

func stop(t testing.TB, p *router.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func module(p *router.Pipeline, name string) router.ModuleStatus {
	for _, m := range p.Status().Modules {
		if m.Name == name {
			return m
		}
	}
	return router.ModuleStatus{}
}

// eventually polls cond until it holds. It is for states that have no event
// to wait on (a gauge in a status snapshot); the deadline is generous and
// only a failure takes that long.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Until(t, 30*time.Second, cond, waitfor.Say("timed out waiting for "+what))
}

func uplinkConfig(dataDir, linkAddr, spoolOpts string) string {
	return fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    devices: 4
    interval: 2ms
    tags: [{name: t, signal: counter, count: 25}]
  cloud:
    type: mqtt
    url: tcp://%s
    ack_timeout: 500ms
    store_and_forward: %s
routes:
  - {from: gen, to: cloud}
`, dataDir, linkAddr, spoolOpts)
}

// TestOutageLosesNothing streams through the spool, cuts the link, lets the
// spool fill, restores the link and checks that the cloud has every
// (source, seq) the generator emitted, in order within the lane, with
// duplicates only from redelivery.
func TestOutageLosesNothing(t *testing.T) {
	r := newRig(t)
	p := pipeline(t, uplinkConfig(t.TempDir(), r.link.Addr(), "{window: 8}"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return c.Unique > 2000 }); err != nil {
		t.Fatal(err)
	}
	r.link.SetMode(flaky.Cut)
	eventually(t, "the spool to fill during the outage", func() bool {
		s := module(p, "cloud").Spool
		return s != nil && s.Records > 5000
	})
	if m := module(p, "cloud"); m.Phase != "down" {
		t.Errorf("uplink state during the outage: %s", m.Phase)
	}
	r.link.SetMode(flaky.Up)
	eventually(t, "the backlog to drain", func() bool {
		s := module(p, "cloud").Spool
		return s != nil && s.Records < 1000 && r.cloud.Report().Unique > 12000
	})
	stop(t, p)
	emitted := module(p, "gen").Out
	rep, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return c.Unique >= emitted-uint64(module(p, "cloud").Spool.Records) })
	if err != nil {
		t.Fatal(err)
	}
	src := rep.Sources["gen"]
	if len(src.Gaps) != 0 {
		t.Fatalf("gaps at the cloud after the outage: %v", src.Gaps)
	}
	t.Logf("emitted %d, cloud unique %d, duplicates %d, out of order %d, still spooled %d",
		emitted, src.Unique, src.Duplicates, src.OutOfOrder, module(p, "cloud").Spool.Records)
	if src.OutOfOrder > src.Duplicates {
		t.Fatalf("%d records out of order beyond redelivered duplicates (%d)", src.OutOfOrder, src.Duplicates)
	}
}

// TestSpoolSurvivesRestart stops ferry while the link is down, starts it
// again on the same data dir with the link up, and expects what was spooled
// to arrive.
func TestSpoolSurvivesRestart(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	r.link.SetMode(flaky.Cut)
	p := pipeline(t, uplinkConfig(dir, r.link.Addr(), "{fsync: always}"))
	eventually(t, "records in the spool", func() bool {
		s := module(p, "cloud").Spool
		return s != nil && s.Records > 3000
	})
	stop(t, p)
	spooled := module(p, "cloud").Spool.Records
	emitted := module(p, "gen").Out
	if spooled != int64(emitted) {
		t.Fatalf("spooled %d of %d emitted with the link down", spooled, emitted)
	}
	r.link.SetMode(flaky.Up)
	// The same config without the generator: only the spool drains.
	cfg := strings.Replace(uplinkConfig(dir, r.link.Addr(), "{fsync: always}"), "interval: 2ms", "interval: 1h", 1)
	p2 := pipeline(t, cfg)
	defer stop(t, p2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The second process emits one batch of its own, numbered after the
	// sequence block the first one had reserved; what matters is that every
	// seq the first process emitted arrives.
	if _, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return allBelow(c.Sources["gen"], emitted) }); err != nil {
		t.Fatalf("records spooled before the restart missing: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "spool", "cloud"))
	if len(entries) == 0 {
		t.Fatal("spool directory missing")
	}
}

// allBelow reports whether every sequence number below n arrived.
func allBelow(s cloud.SourceReport, n uint64) bool {
	if s.Unique == 0 || s.First != 0 || s.Last+1 < n {
		return false
	}
	return len(s.Gaps) == 0 || s.Gaps[0].From >= n
}

// TestPoisonBatchMovesOn sends through the HTTP uplink with a spool: the far
// side refuses one batch with 400, which goes to the dead-letter file, and
// the queue moves on to deliver what follows.
func TestPoisonBatchMovesOn(t *testing.T) {
	c, err := cloud.Start(t.Context(), cloud.Config{MQTTAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	c.SetHTTPStatus(400)
	p := pipeline(t, fmt.Sprintf(`
data_dir: %s
connectors:
  gen: {type: generator, interval: 5ms, tags: [{name: t, signal: counter, count: 10}]}
  cloud:
    type: http
    url: %s/ingest
    store_and_forward: true
routes:
  - {from: gen, to: cloud}
`, dir, c.HTTPURL()))
	defer stop(t, p)
	dead := filepath.Join(dir, "cloud", "dead-letter.jsonl")
	eventually(t, "a dead letter", func() bool {
		st, err := os.Stat(dead)
		return err == nil && st.Size() > 0
	})
	c.SetHTTPStatus(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := c.Wait(ctx, func(r cloud.Report) bool { return r.Unique > 100 }); err != nil {
		t.Fatal(err)
	}
	if m := module(p, "cloud"); m.Errors == 0 {
		t.Fatalf("poison batches not counted: %+v", m.Snapshot)
	}
}

// TestSpoolSurvivesReload reloads a changed uplink while its link is down
// and records wait in its spool: the spool keeps them, and they all arrive
// once the link is back.
func TestSpoolSurvivesReload(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	r.link.SetMode(flaky.Cut)
	p := pipeline(t, uplinkConfig(dir, r.link.Addr(), "{window: 4}"))
	defer stop(t, p)
	eventually(t, "records in the spool", func() bool {
		s := module(p, "cloud").Spool
		return s != nil && s.Records > 2000
	})
	before := module(p, "cloud").Spool.Records
	nc, err := router.Load("e2e.yaml", []byte(strings.Replace(uplinkConfig(dir, r.link.Addr(), "{window: 4}"), "ack_timeout: 500ms", "ack_timeout: 700ms", 1)), conf.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Reload(t.Context(), nc)
	if err != nil || len(res.Restarted) != 1 || res.Restarted[0] != "cloud" {
		t.Fatalf("reload: %+v %v", res, err)
	}
	if after := module(p, "cloud").Spool.Records; after < before {
		t.Fatalf("spool went from %d to %d records across the reload", before, after)
	}
	r.link.SetMode(flaky.Up)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	emitted := module(p, "gen").Out
	if _, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return allBelow(c.Sources["gen"], emitted) }); err != nil {
		t.Fatalf("records spooled across the reload missing: %v", err)
	}
}
