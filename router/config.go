// Package router loads ferry's configuration, compiles routes once, and runs
// the pipeline: connectors, the routing engine between them, and the bus.
package router

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is one ferry.yaml, decoded, defaulted and validated.
type Config struct {
	File    string
	Site    string
	DataDir string
	Admin   AdminConfig
	Bus     bus.Config
	Modules []*Module // in file order
	Routes  []*RouteConfig
}

// AdminConfig is the admin HTTP endpoint.
type AdminConfig struct {
	// Addr is host:port; "off" disables the endpoint.
	Addr string `yaml:"addr"`
}

// Module is one configured connector instance.
type Module struct {
	Name      string
	Type      string
	Info      connectors.Info
	Connector connectors.Connector
	Node      *yaml.Node // its section, for reload comparisons and messages
	// Spool, when set, is the durable queue in front of this sink
	// (store_and_forward: in its section).
	Spool *spool.Config
}

// Roles returns what this instance does.
func (m *Module) Roles() connectors.Role { return m.Info.Roles }

// Outputs returns the source outputs of the instance, or nil.
func (m *Module) Outputs() []string {
	s, ok := m.Connector.(connectors.Source)
	if !ok || m.Info.Roles&connectors.RoleSource == 0 {
		return nil
	}
	return s.Outputs()
}

// IsSink reports whether the instance can take routed batches.
func (m *Module) IsSink() bool {
	_, ok := m.Connector.(connectors.Sink)
	return ok && m.Info.Roles&connectors.RoleSink != 0
}

// fileConfig is the top level of the file as YAML sees it.
type fileConfig struct {
	Site       string         `yaml:"site"`
	DataDir    string         `yaml:"data_dir"`
	Admin      AdminConfig    `yaml:"admin"`
	Bus        bus.Config     `yaml:"bus"`
	Connectors yaml.Node      `yaml:"connectors"`
	Routes     []*RouteConfig `yaml:"routes"`
}

// Defaults for the top level.
const (
	DefaultAdminAddr = "127.0.0.1:8080"
	DefaultDataDir   = "data"
	DefaultSite      = "site"
)

var moduleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// LoadFile reads and loads a config file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Load(path, data, conf.Resolver{})
}

// Load decodes, defaults and validates a config. The error, when there is
// one, is conf.Errors: every problem of the file, each with FILE:LINE:COL.
func Load(file string, data []byte, r conf.Resolver) (*Config, error) {
	src, err := conf.Parse(file, data)
	if err != nil {
		return nil, err
	}
	errs := src.Interpolate(r)
	if src.Root.Kind != yaml.MappingNode {
		return nil, append(errs, src.At(src.Root, "", "expected a mapping with site, data_dir, admin, bus, connectors and routes")).Err()
	}
	var fc fileConfig
	errs = append(errs, src.Decode(src.Root, &fc, "")...)

	c := &Config{File: file, Site: fc.Site, DataDir: fc.DataDir, Admin: fc.Admin, Bus: fc.Bus, Routes: fc.Routes}
	if c.Site == "" {
		c.Site = DefaultSite
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Admin.Addr == "" {
		c.Admin.Addr = DefaultAdminAddr
	}
	c.Bus.SetDefaults()
	if !contains(bus.Backends, c.Bus.Type) {
		errs = append(errs, src.At(conf.Locate(src.Root, "bus.type"), "bus.type", "%q is not one of %s", c.Bus.Type, strings.Join(bus.Backends, ", ")))
	}
	if c.Admin.Addr != "off" {
		if _, port, ok := strings.Cut(c.Admin.Addr, ":"); !ok || !validPort(port) {
			errs = append(errs, src.At(conf.Locate(src.Root, "admin.addr"), "admin.addr", "%q is not host:port (or \"off\")", c.Admin.Addr))
		}
	}

	errs = append(errs, c.loadModules(src, &fc.Connectors)...)
	errs = append(errs, c.compileRouteConfigs(src)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) loadModules(src *conf.Source, n *yaml.Node) conf.Errors {
	var errs conf.Errors
	if n.Kind == 0 {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return conf.Errors{src.At(n, "connectors", "expected a mapping of connector names to their settings")}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, body := n.Content[i], n.Content[i+1]
		name, path := key.Value, "connectors."+key.Value
		if !moduleName.MatchString(name) || name == "router" {
			errs = append(errs, src.At(key, path, "connector name %q must start with a letter or digit and hold only letters, digits, '_', '-' and '.' (and not be \"router\")", name))
			continue
		}
		if seen[name] {
			errs = append(errs, src.At(key, path, "connector %q is defined twice", name))
			continue
		}
		seen[name] = true
		if body.Kind != yaml.MappingNode {
			errs = append(errs, src.At(body, path, "expected the connector's settings, starting with type:"))
			continue
		}
		typ := conf.MapValue(body, "type")
		if typ == nil || typ.Value == "" {
			errs = append(errs, src.At(key, path+".type", "missing type; registered types are %s", strings.Join(connectors.Names(), ", ")))
			continue
		}
		info, ok := connectors.Lookup(typ.Value)
		if !ok {
			errs = append(errs, src.At(typ, path+".type", "unknown connector type %q; registered types are %s", typ.Value, strings.Join(connectors.Names(), ", ")))
			continue
		}
		m := &Module{Name: name, Type: typ.Value, Info: info, Connector: info.New(), Node: body}
		errs = append(errs, connectors.Decode(src, body, m.Connector, path)...)
		if sf := conf.MapValue(body, "store_and_forward"); sf != nil {
			errs = append(errs, c.decodeSpool(src, m, sf, path+".store_and_forward")...)
		}
		c.Modules = append(c.Modules, m)
	}
	return errs
}

// decodeSpool reads a sink's store_and_forward section. `true` takes every
// default; a mapping sets spool options. The directory defaults to
// <data_dir>/spool/<module>, resolved at start because --data-dir may move it.
func (c *Config) decodeSpool(src *conf.Source, m *Module, n *yaml.Node, path string) conf.Errors {
	if !m.IsSink() {
		return conf.Errors{src.At(n, path, "only a sink can have a store_and_forward spool; %s (type %s) is not one", m.Name, m.Type)}
	}
	sc := &spool.Config{}
	var errs conf.Errors
	if n.Kind == yaml.ScalarNode && (n.Value == "true" || n.Value == "false") {
		if n.Value == "false" {
			return nil
		}
	} else {
		errs = src.Decode(n, sc, path)
	}
	sc.Name = m.Name
	placeholder := sc.Dir == ""
	if placeholder {
		sc.Dir = "spool/" + m.Name // checked now, placed under data_dir at start
	}
	sc.SetDefaults()
	errs = append(errs, src.Positioned(n, path, sc.Validate())...)
	if placeholder {
		sc.Dir = ""
	}
	m.Spool = sc
	return errs
}

// Module returns the instance named name, or nil.
func (c *Config) Module(name string) *Module {
	for _, m := range c.Modules {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// sourceTopics lists every "<module>/<output>" a source of c emits on.
func (c *Config) sourceTopics() []string {
	var out []string
	for _, m := range c.Modules {
		for _, o := range m.Outputs() {
			out = append(out, connectors.Topic(m.Name, o))
		}
	}
	sort.Strings(out)
	return out
}

func (c *Config) sinkNames() []string {
	var out []string
	for _, m := range c.Modules {
		if m.IsSink() {
			out = append(out, m.Name)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}
