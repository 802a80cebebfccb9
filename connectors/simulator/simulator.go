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
	"strings"
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

	modbus []*simmodbus.Server
	opcua  []*simopcua.Server
	cloud  *cloud.Cloud
	links  []*flaky.Proxy
	cancel context.CancelFunc
}

// Start starts every simulator; a port that cannot be bound fails the start.
func (s *Simulator) Start(_ context.Context, env *connectors.Env) error {
	ctx, cancel := context.WithCancel(env.Context())
	s.cancel = cancel
	log := env.Logger
	for _, m := range s.Modbus {
		cfg := simmodbus.DemoConfig()
		cfg.Addr, cfg.Logger = m.Addr, log
		srv, err := simmodbus.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("modbus simulator: %w", err)
		}
		s.modbus = append(s.modbus, srv)
	}
	for _, o := range s.OPCUA {
		srv, err := simopcua.Start(ctx, simopcua.Config{Addr: o.Addr, Tags: o.Tags, Interval: o.Interval.D(), Logger: log})
		if err != nil {
			return fmt.Errorf("opcua simulator: %w", err)
		}
		s.opcua = append(s.opcua, srv)
		log.Info("opcua sim listening", "endpoint", srv.Endpoint())
	}
	if s.Cloud != nil {
		c, err := cloud.Start(ctx, cloud.Config{MQTTAddr: s.Cloud.MQTT, HTTPAddr: s.Cloud.HTTP, Logger: log})
		if err != nil {
			return err
		}
		s.cloud = c
		env.Go("cloud-report", func(ctx context.Context) error {
			return s.report(ctx, log, s.Cloud.ReportEvery.D())
		})
	}
	for _, l := range s.Links {
		p, err := flaky.Start(ctx, flaky.Config{Listen: l.Listen, Target: l.Target, Logger: log.With("link", l.Name)})
		if err != nil {
			return err
		}
		s.links = append(s.links, p)
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
	}
	return nil
}

// report logs what the cloud received, so a newcomer watching the demo sees
// the link drop and every record arrive anyway.
func (s *Simulator) report(ctx context.Context, log *slog.Logger, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r := s.cloud.Report()
		var srcs []string
		for name, sr := range r.Sources {
			srcs = append(srcs, fmt.Sprintf("%s=%d..%d", name, sr.First, sr.Last))
		}
		log.Info("cloud received", "unique", r.Unique, "duplicates", r.Duplicates, "missing", r.Missing(), "sources", strings.Join(srcs, " "))
	}
}

// Cloud returns the running cloud simulator, or nil (tests and the status
// page read its report).
func (s *Simulator) CloudSim() *cloud.Cloud { return s.cloud }

// Links returns the running flaky links, in config order.
func (s *Simulator) LinkSims() []*flaky.Proxy { return s.links }

// OPCUASims returns the running OPC UA servers, in config order.
func (s *Simulator) OPCUASims() []*simopcua.Server { return s.opcua }

// ModbusSims returns the running Modbus servers, in config order.
func (s *Simulator) ModbusSims() []*simmodbus.Server { return s.modbus }

// Stop stops everything that was started. Safe after a failed Start.
func (s *Simulator) Stop(context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
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
