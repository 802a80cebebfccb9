// Package modbus is ferry's Modbus connector: it polls devices over Modbus
// TCP, RTU over a serial line or over TCP, and ASCII, turns their registers
// into records by a tag map that reads like the device's manual, and writes
// coil and holding tags back.
//
// Tags of one device and area are coalesced into as few reads as the
// protocol allows, once, at start. Devices that share an endpoint share one
// connection with one request in flight, and one goroutine polls them in
// turn, each on its own interval; devices on different endpoints are polled
// in parallel. Every poll cycle of a device is one batch.
//
// The client is github.com/goburrow/modbus v0.1.0. Its known defect (issue
// #64: after one late reply, TCP responses stay one behind their requests)
// is defended against by closing the connection after any failed exchange
// that was not an exception reply; see link.
package modbus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/ferry-gateway/ferry/connectors"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "modbus",
		Roles:   connectors.RoleSource | connectors.RoleWriter,
		New:     func() connectors.Connector { return &Modbus{} },
		Sample:  sample,
		Summary: "Modbus TCP, UDP, RTU, ASCII and RTU-over-TCP devices: coalesced polling in poll groups, and write-back",
	})
}

// Modbus is the connector.
type Modbus struct {
	Config `yaml:",inline"`

	env     *connectors.Env
	learned *learnedStore
	links   []*link
	devices atomic.Pointer[map[string]*device] // set once Start is done
	cancel  context.CancelFunc

	mu      sync.Mutex
	failing map[*device]bool
}

// Outputs implements connectors.Source.
func (m *Modbus) Outputs() []string { return []string{connectors.DefaultOutput} }

// Start opens nothing yet: it builds the read plans, loads what was learned
// about the devices, and starts one poll loop per endpoint (and, where an
// endpoint has several devices, one emitter that publishes their batches
// while the next device is read). Connections are made by the first
// request and remade after failures.
func (m *Modbus) Start(_ context.Context, env *connectors.Env) error {
	specs, p := m.Config.build()
	if err := p.Err(); err != nil {
		return err
	}
	m.env = env
	m.failing = map[*device]bool{}
	env.Connecting()
	path := ""
	if dir, err := env.DataDir(); err == nil {
		path = filepath.Join(dir, LearnedFile)
	} else {
		env.Logger.Warn("learned device limits are kept in memory only", "error", err)
	}
	store, err := loadLearned(path)
	if err != nil {
		env.Error(err)
	}
	m.learned = store
	met := newMetrics(env.Metrics)
	links := map[string]*link{}
	devices := map[string]*device{}
	for _, spec := range specs {
		key := spec.endpoint.Transport + "|" + spec.endpoint.Addr + spec.endpoint.Device
		l := links[key]
		if l == nil {
			l = newLink(spec.endpoint, spec.set.timeout)
			reconnects := met.reconnects.WithLabelValues(env.Name, spec.endpoint.String())
			l.onReset = reconnects.Inc
			links[key] = l
			m.links = append(m.links, l)
		}
		l.setPacing(&spec.set)
		d := newDevice(m, spec, l, store.get(spec), met.device(env.Name, spec.name))
		devices[spec.name] = d
		l.devices = append(l.devices, d)
	}
	ctx, cancel := context.WithCancel(env.Context())
	m.cancel = cancel
	m.devices.Store(&devices)
	for _, l := range m.links {
		if len(l.devices) > 1 {
			l.emitq = make(chan *device, len(l.devices))
			for _, d := range l.devices {
				d.free = make(chan struct{}, 1)
				d.free <- struct{}{}
			}
			env.Go("emit "+l.ep.String(), func(context.Context) error { return l.emit(ctx, env) })
		}
		env.Go("poll "+l.ep.String(), func(context.Context) error { return l.run(ctx) })
	}
	return nil
}

// Stop ends the poll loops and closes every connection, after the request
// in flight on it (at most one timeout).
func (m *Modbus) Stop(ctx context.Context) error {
	if m.cancel != nil {
		m.cancel()
	}
	var errs []error
	for _, l := range m.links {
		if err := l.shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Modbus) deviceDown(d *device, err error) {
	d.met.up.Set(0)
	d.failing = true
	m.mu.Lock()
	m.failing[d] = true
	m.mu.Unlock()
	m.env.Down(err)
}

func (m *Modbus) deviceUp(d *device) {
	if d.upOnce && !d.failing {
		return
	}
	d.upOnce = true
	d.met.up.Set(1)
	m.mu.Lock()
	delete(m.failing, d)
	n := len(m.failing)
	m.mu.Unlock()
	d.failing = false
	if n == 0 {
		m.env.Up()
	}
}

func (m *Modbus) device(name string) (*device, error) {
	devs := m.devices.Load()
	if devs == nil {
		return nil, fmt.Errorf("modbus: %w: connector not started", connectors.ErrNotConnected)
	}
	d := (*devs)[name]
	if d == nil {
		return nil, fmt.Errorf("modbus: %w: no device %q", connectors.ErrUnknownTag, name)
	}
	return d, nil
}

var (
	_ connectors.Source    = (*Modbus)(nil)
	_ connectors.Writer    = (*Modbus)(nil)
	_ connectors.Defaulter = (*Modbus)(nil)
	_ connectors.Diagnoser = (*Modbus)(nil)
)
