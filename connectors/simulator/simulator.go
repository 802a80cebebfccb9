// Package simulator runs ferry's simulators in-process as a module of the
// pipeline, so the demo (and a user's trial config) has devices to poll
// (Modbus TCP, OPC UA), a cloud to send to and a link that drops, all from
// one YAML file.
package simulator

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "simulator",
		Roles:   connectors.RoleService,
		New:     func() connectors.Connector { return &Simulator{} },
		Sample:  sample,
		Summary: "in-process Modbus devices, a receiving cloud and flaky links, for demos and trials",
	})
}

// Config is the simulator's section of ferry.yaml.
type Config struct {
	Modbus []ModbusConfig `yaml:"modbus"`
	OPCUA  []OPCUAConfig  `yaml:"opcua"`
	Cloud  *CloudConfig   `yaml:"cloud"`
	Links  []LinkConfig   `yaml:"links"`
}

// ModbusConfig is one simulated Modbus TCP server.
type ModbusConfig struct {
	Addr string `yaml:"addr"`
}

// OPCUAConfig is one simulated OPC UA server: a Plant folder with changing
// variables, a writable Plant/Setpoint and a read-only Plant/Limit, in
// namespace urn:ferry:sim:plant, endpoints None and Basic256Sha256.
type OPCUAConfig struct {
	Addr     string        `yaml:"addr"`
	Tags     int           `yaml:"tags"`
	Interval conf.Duration `yaml:"interval"`
}

// CloudConfig is the simulated receiving cloud.
type CloudConfig struct {
	MQTT        string        `yaml:"mqtt"`
	HTTP        string        `yaml:"http"`
	ReportEvery conf.Duration `yaml:"report_every"`
}

// LinkConfig is one flaky link.
type LinkConfig struct {
	Name     string       `yaml:"name"`
	Listen   string       `yaml:"listen"`
	Target   string       `yaml:"target"`
	Loop     bool         `yaml:"loop"`
	Schedule []StepConfig `yaml:"schedule"`
}

// StepConfig is one schedule entry.
type StepConfig struct {
	After conf.Duration `yaml:"after"`
	Mode  string        `yaml:"mode"`
}

var modes = map[string]flaky.Mode{"up": flaky.Up, "cut": flaky.Cut, "blackhole": flaky.Blackhole}

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Cloud != nil {
		if c.Cloud.MQTT == "" {
			c.Cloud.MQTT = "off"
		}
		if c.Cloud.HTTP == "" {
			c.Cloud.HTTP = "off"
		}
		if c.Cloud.ReportEvery == 0 {
			c.Cloud.ReportEvery = conf.Duration(10 * time.Second)
		}
	}
	for i := range c.Links {
		if c.Links[i].Name == "" {
			c.Links[i].Name = fmt.Sprintf("link%d", i+1)
		}
	}
}

// Validate checks addresses and schedules.
func (c *Config) Validate() error {
	var p conf.Problems
	addr := func(path, a string, offOK bool) {
		if offOK && a == "off" {
			return
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			p.Add(path, "%q is not host:port", a)
		}
	}
	for i, m := range c.Modbus {
		addr(fmt.Sprintf("modbus[%d].addr", i), m.Addr, false)
	}
	for i, o := range c.OPCUA {
		addr(fmt.Sprintf("opcua[%d].addr", i), o.Addr, false)
		if o.Tags < 0 {
			p.Add(fmt.Sprintf("opcua[%d].tags", i), "must not be negative")
		}
	}
	if c.Cloud != nil {
		addr("cloud.mqtt", c.Cloud.MQTT, true)
		addr("cloud.http", c.Cloud.HTTP, true)
	}
	for i, l := range c.Links {
		path := fmt.Sprintf("links[%d]", i)
		addr(path+".listen", l.Listen, false)
		addr(path+".target", l.Target, false)
		for j, s := range l.Schedule {
			if _, ok := modes[s.Mode]; !ok {
				p.Add(fmt.Sprintf("%s.schedule[%d].mode", path, j), "%q is not one of up, cut, blackhole", s.Mode)
			}
		}
	}
	if len(c.Modbus) == 0 && len(c.OPCUA) == 0 && c.Cloud == nil && len(c.Links) == 0 {
		p.Add("", "nothing to simulate; configure modbus, opcua, cloud or links")
	}
	return p.Err()
}

// Simulator runs the configured simulators.
type Simulator struct {
	Config `yaml:",inline"`

	mu     sync.Mutex // guards the started simulators: a retried one joins late
	modbus []*simmodbus.Server
	opcua  []*simopcua.Server
	cloud  *cloud.Cloud
	links  []*flaky.Proxy
	cancel context.CancelFunc
}

// piece is one simulator of the module: its name in logs (with the address
// it listens on) and how to start it.
type piece struct {
	name  string
	start func(ctx context.Context) error
}

// Start starts every simulator on its own: one whose port is taken does not
// keep the others from running (the demo's devices and cloud go on when
// only its Modbus port is taken). The module is down, naming each
// simulator that could not start and its address, and each is tried again
// with back-off until it starts.
func (s *Simulator) Start(_ context.Context, env *connectors.Env) error {
	ctx, cancel := context.WithCancel(env.Context())
	s.cancel = cancel
	log := env.Logger
	var pieces []piece
	for _, m := range s.Modbus {
		pieces = append(pieces, piece{"modbus simulator on " + m.Addr, func(ctx context.Context) error {
			cfg := simmodbus.DemoConfig()
			cfg.Addr, cfg.Logger = m.Addr, log
			srv, err := simmodbus.Start(ctx, cfg)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.modbus = append(s.modbus, srv)
			s.mu.Unlock()
			return nil
		}})
	}
	for _, o := range s.OPCUA {
		pieces = append(pieces, piece{"opcua simulator on " + o.Addr, func(ctx context.Context) error {
			srv, err := simopcua.Start(ctx, simopcua.Config{Addr: o.Addr, Tags: o.Tags, Interval: o.Interval.D(), Logger: log})
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.opcua = append(s.opcua, srv)
			s.mu.Unlock()
			log.Info("opcua sim listening", "endpoint", srv.Endpoint())
			return nil
		}})
	}
	if s.Cloud != nil {
		pieces = append(pieces, piece{"cloud simulator on " + s.Cloud.MQTT + " (mqtt), " + s.Cloud.HTTP + " (http)", func(ctx context.Context) error {
			c, err := cloud.Start(ctx, cloud.Config{MQTTAddr: s.Cloud.MQTT, HTTPAddr: s.Cloud.HTTP, Logger: log})
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.cloud = c
			s.mu.Unlock()
			env.Go("cloud-report", func(ctx context.Context) error {
				return s.report(ctx, log, c, s.Cloud.ReportEvery.D())
			})
			return nil
		}})
	}
	for _, l := range s.Links {
		pieces = append(pieces, piece{"link " + l.Name + " on " + l.Listen, func(ctx context.Context) error {
			p, err := flaky.Start(ctx, flaky.Config{Listen: l.Listen, Target: l.Target, Logger: log.With("link", l.Name)})
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.links = append(s.links, p)
			s.mu.Unlock()
			steps := make([]flaky.Step, len(l.Schedule))
			for i, st := range l.Schedule {
				steps[i] = flaky.Step{Wait: st.After.D(), Mode: modes[st.Mode]}
			}
			loop := l.Loop
			env.Go("link-"+l.Name, func(ctx context.Context) error {
				p.RunSchedule(ctx, steps, loop)
				<-ctx.Done()
				return nil
			})
			return nil
		}})
	}

	var failed []piece
	var errs []error
	for _, p := range pieces {
		if err := p.start(ctx); err != nil {
			failed = append(failed, p)
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	env.Down(errors.Join(errs...))
	left := &atomic.Int32{}
	left.Store(int32(len(failed)))
	for _, p := range failed {
		env.Go(p.name, func(ctx context.Context) error {
			if err := p.start(ctx); err != nil {
				return err
			}
			log.Info("simulator started after all", "simulator", p.name)
			if left.Add(-1) == 0 {
				env.Up()
			}
			<-ctx.Done()
			return nil
		})
	}
	return nil
}

// report logs what the cloud received, so a newcomer watching the demo sees
// the link drop and every record arrive anyway.
func (s *Simulator) report(ctx context.Context, log *slog.Logger, c *cloud.Cloud, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r := c.Report()
		var srcs []string
		for name, sr := range r.Sources {
			srcs = append(srcs, fmt.Sprintf("%s=%d..%d", name, sr.First, sr.Last))
		}
		log.Info("cloud received", "unique", r.Unique, "duplicates", r.Duplicates, "missing", r.Missing(), "sources", strings.Join(srcs, " "))
	}
}

// Cloud returns the running cloud simulator, or nil (tests and the status
// page read its report).
func (s *Simulator) CloudSim() *cloud.Cloud {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cloud
}

// Links returns the running flaky links, in config order.
func (s *Simulator) LinkSims() []*flaky.Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.links)
}

// OPCUASims returns the running OPC UA servers, in config order.
func (s *Simulator) OPCUASims() []*simopcua.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.opcua)
}

// ModbusSims returns the running Modbus servers, in config order.
func (s *Simulator) ModbusSims() []*simmodbus.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.modbus)
}

// Stop stops everything that was started. Safe after a failed Start.
func (s *Simulator) Stop(context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	for _, m := range s.modbus {
		errs = append(errs, m.Close())
	}
	for _, o := range s.opcua {
		errs = append(errs, o.Close())
	}
	if s.cloud != nil {
		s.cloud.Close()
	}
	return errors.Join(errs...)
}

var _ connectors.Connector = (*Simulator)(nil)
