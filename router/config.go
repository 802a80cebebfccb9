// Package router loads ferry's configuration, compiles routes once, and runs
// the pipeline: connectors, the routing engine between them, and the bus.
package router

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router/outlet"
)

// Config is one ferry.yaml, decoded, defaulted and validated.
type Config struct {
	File    string
	Site    string
	DataDir string
	Admin   AdminConfig
	Bus     BusConfig
	// MemoryLimit is the soft limit on the memory the Go runtime manages
	// (memory_limit:), which `ferry run` hands to debug.SetMemoryLimit: 0
	// when the file does not set it, -1 for "off".
	MemoryLimit int64
	// Procs is how many threads run Go code at once (procs:), which
	// `ferry run` hands to runtime.GOMAXPROCS: 0 when the file does not
	// set it, -1 for "auto" (the runtime's own choice).
	Procs   int
	Modules []*Module // in file order
	Routes  []*RouteConfig
	// Warnings are what loads but probably does not do what was meant, in
	// file order: `ferry validate` prints them (and exits 0), and `ferry
	// run` logs them at start.
	Warnings []*conf.Warning

	// unusable names the connectors whose type is missing or unknown: a
	// route naming one is not reported again as naming a missing module.
	unusable map[string]bool
}

// AdminConfig is the admin HTTP endpoint.
type AdminConfig struct {
	// Addr is host:port; "off" disables the endpoint.
	Addr string `yaml:"addr"`
	// Auth, once set, guards every route but /healthz and /readyz.
	Auth AdminAuth `yaml:"auth"`
	// TLS serves HTTPS from a certificate and key in PEM files.
	TLS AdminTLS `yaml:"tls"`
	// Insecure allows an address off loopback without authentication.
	// The page then only reads: discovery and writes are off.
	Insecure bool `yaml:"insecure"`
}

// AdminAuth is who may use the admin endpoint: a bearer token, users with
// bcrypt password hashes (from `ferry passwd`), or both.
type AdminAuth struct {
	Token string      `yaml:"token"`
	Users []AdminUser `yaml:"users"`
}

// AdminUser is one login of the admin endpoint.
type AdminUser struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
}

// AdminTLS names the PEM files of the admin endpoint's certificate.
type AdminTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// minAdminToken keeps a token out of reach of guessing.
const minAdminToken = 16

// AuthOn reports whether the admin endpoint asks who is calling.
func (a *AdminConfig) AuthOn() bool { return a.Auth.Token != "" || len(a.Auth.Users) > 0 }

// TLSOn reports whether the admin endpoint serves HTTPS.
func (a *AdminConfig) TLSOn() bool { return a.TLS.Cert != "" }

// Loopback reports whether the admin address is reachable from this
// machine only: a loopback IP or localhost. An empty host is every
// interface.
func (a *AdminConfig) Loopback() bool {
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Commissioning reports whether the admin endpoint may change things on
// devices (writes) or reach out to them (discovery): with authentication,
// or on loopback. Off loopback without it (insecure: true) it only reads.
func (a *AdminConfig) Commissioning() bool { return a.AuthOn() || a.Loopback() }

// check validates the admin section: the users, the token, TLS's pair of
// files, and that an address off loopback is not left open by accident.
func (a *AdminConfig) check(src *conf.Source) conf.Errors {
	var errs conf.Errors
	at := func(path, format string, args ...any) {
		errs = append(errs, src.At(conf.Locate(src.Root, path), path, format, args...))
	}
	if t := a.Auth.Token; t != "" && len(t) < minAdminToken {
		at("admin.auth.token", "is %d characters; use at least %d (for instance: openssl rand -hex 24)", len(t), minAdminToken)
	}
	seen := map[string]bool{}
	for i, u := range a.Auth.Users {
		path := fmt.Sprintf("admin.auth.users[%d]", i)
		switch {
		case u.Name == "":
			at(path+".name", "is empty; every user needs a name")
		case strings.Contains(u.Name, ":"):
			at(path+".name", "%q has a colon, which HTTP basic authentication cannot carry", u.Name)
		case seen[u.Name]:
			at(path+".name", "%q is listed twice", u.Name)
		}
		seen[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			at(path+".password_hash", "not a bcrypt hash (make one with `ferry passwd`)")
		}
	}
	if (a.TLS.Cert == "") != (a.TLS.Key == "") {
		at("admin.tls", "needs both cert and key (PEM files)")
	}
	if a.Addr != "off" && !a.Loopback() && !a.AuthOn() && !a.Insecure {
		at("admin.addr", "%s is reachable from other machines and the admin endpoint has no authentication; set admin.auth (a token, or users from `ferry passwd`), or write insecure: true under admin if the network is trusted (the page then only reads: no writes, no discovery)", a.Addr)
	}
	return errs
}

// Module is one configured connector instance.
type Module struct {
	Name      string
	Type      string
	Info      connectors.Info
	Connector connectors.Connector
	// Node is its section while the file loads, for messages; Load drops
	// it (the tree of a thousand tags is a megabyte) and keeps Section.
	Node *yaml.Node
	// Section is the digest of its section (sectionDigest): a reload
	// keeps a module whose section did not change.
	Section [sha256.Size]byte
	// Spool, when set, is the durable queue in front of this sink
	// (store_and_forward: in its section). With JetStream set, the queue
	// is the sink's stream on the NATS bus instead, bounded by
	// Spool.Quota, OnFull and MaxAge.
	Spool     *spool.Config
	JetStream bool
	// Buffer bounds the in-memory outlet of a sink without a spool (its
	// buffer: key); nil takes the defaults.
	Buffer *outlet.BufferConfig
	// Drain, set for a local spool in drain mode live-first, lets new
	// data go ahead of a backlog (store_and_forward.drain); nil: ordered.
	Drain *outlet.DrainConfig
	// ActiveStandby: on the NATS bus, instances with this source elect one
	// owner through a lease, and only the owner runs it.
	ActiveStandby bool
	// fresh builds a new, unstarted instance of the connector from the same
	// section: each term of an active/standby source starts anew.
	fresh func() connectors.Connector

	outputs []string
	sink    bool
}

// storeForward is a store_and_forward: mapping.
type storeForward struct {
	// Backend is local (ferry's spool on this box) or jetstream (the sink's
	// stream on the NATS bus, which survives the loss of the box).
	Backend      string `yaml:"backend"`
	spool.Config `yaml:",inline"`
	// Drain is how a backlog drains: in order, or live data first.
	Drain outlet.DrainConfig `yaml:"drain"`
}

// Store-and-forward backends.
const (
	BackendLocal     = "local"
	BackendJetStream = "jetstream"
)

// jetstreamKeys are the store_and_forward settings a JetStream stream has.
var jetstreamKeys = map[string]bool{"backend": true, "quota": true, "on_full": true, "max_age": true, "window": true}

// Roles returns what this instance does.
func (m *Module) Roles() connectors.Role { return m.Info.Roles }

// Outputs returns the source outputs of the instance, or nil.
func (m *Module) Outputs() []string { return m.outputs }

// IsSink reports whether the instance can take routed batches.
func (m *Module) IsSink() bool { return m.sink }

// settle records what the decoded connector is. They are read everywhere
// (status, graph, reload) while an active/standby source swaps its
// connector for a fresh one at each term, so they are not asked of it.
func (m *Module) settle() {
	if s, ok := m.Connector.(connectors.Source); ok && m.Info.Roles&connectors.RoleSource != 0 {
		m.outputs = s.Outputs()
	}
	_, ok := m.Connector.(connectors.Sink)
	m.sink = ok && m.Info.Roles&connectors.RoleSink != 0
}

// fileConfig is the top level of the file as YAML sees it.
type fileConfig struct {
	Site        string         `yaml:"site"`
	DataDir     string         `yaml:"data_dir"`
	Admin       AdminConfig    `yaml:"admin"`
	Bus         BusConfig      `yaml:"bus"`
	MemoryLimit string         `yaml:"memory_limit"`
	Procs       string         `yaml:"procs"`
	Connectors  yaml.Node      `yaml:"connectors"`
	Routes      []*RouteConfig `yaml:"routes"`
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
	// Before Interpolate, which replaces a ${...} with the secret itself.
	warnings := src.ClearSecrets()
	rec := conf.Record(r)
	errs := src.Interpolate(rec.Resolver())
	if src.Root.Kind != yaml.MappingNode {
		return nil, append(errs, src.At(src.Root, "", "expected a mapping with site, data_dir, admin, bus, connectors and routes")).Err()
	}
	if e := pastedSection(src, src.Root, ""); e != nil {
		return nil, append(errs, e).Err()
	}
	var fc fileConfig
	errs = append(errs, src.Decode(src.Root, &fc, "")...)

	c := &Config{File: file, Site: fc.Site, DataDir: fc.DataDir, Admin: fc.Admin, Bus: fc.Bus, Routes: fc.Routes, Warnings: warnings}
	if c.Site == "" {
		c.Site = DefaultSite
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Admin.Addr == "" {
		c.Admin.Addr = DefaultAdminAddr
	}
	errs = append(errs, c.Bus.load(src, src.Root)...)
	if e := c.loadMemoryLimit(src, fc.MemoryLimit); e != nil {
		errs = append(errs, e)
	}
	if e := c.loadProcs(src, fc.Procs); e != nil {
		errs = append(errs, e)
	}
	if c.Admin.Addr != "off" {
		if _, _, err := conf.HostPort(c.Admin.Addr); err != nil {
			errs = append(errs, src.At(conf.Locate(src.Root, "admin.addr"), "admin.addr", "%q is not host:port (or \"off\")", c.Admin.Addr))
		} else {
			errs = append(errs, c.Admin.check(src)...)
		}
	}

	errs = append(errs, c.loadModules(src, &fc.Connectors, resection(file, data, rec))...)
	errs = append(errs, c.compileRouteConfigs(src)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c.Warnings = append(c.Warnings, c.flowWarnings(src)...)
	conf.SortWarnings(c.Warnings)
	for _, m := range c.Modules {
		m.Section, m.Node = sectionDigest(m.Node), nil
	}
	return c, nil
}

// sectionDigest digests a module's section: kinds, resolved tags and
// values, so that comments, quoting and layout do not count as a change.
// It walks the tree rather than re-encoding it: a thousand tags re-encoded
// at every start would take megabytes the process then holds at its peak.
func sectionDigest(n *yaml.Node) [sha256.Size]byte {
	h := sha256.New()
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.AliasNode {
			walk(n.Alias)
			return
		}
		fmt.Fprintf(h, "%d %s %d:%s(", n.Kind, n.ShortTag(), len(n.Value), n.Value)
		for _, c := range n.Content {
			walk(c)
		}
		h.Write([]byte{')'})
	}
	walk(n)
	return [sha256.Size]byte(h.Sum(nil))
}

// loadMemoryLimit reads memory_limit: a size, or "off".
func (c *Config) loadMemoryLimit(src *conf.Source, v string) *conf.Error {
	switch v {
	case "":
		return nil
	case "off":
		c.MemoryLimit = -1
		return nil
	}
	n, err := conf.ParseSize(v)
	if err != nil || n <= 0 {
		return src.At(conf.Locate(src.Root, "memory_limit"), "memory_limit", "%q is not a size such as 32MiB, or \"off\"", v)
	}
	c.MemoryLimit = int64(n)
	return nil
}

// loadProcs reads procs: a number of threads, or "auto".
func (c *Config) loadProcs(src *conf.Source, v string) *conf.Error {
	if v == "" {
		return nil
	}
	n, err := ParseProcs(v)
	if err != nil {
		return src.At(conf.Locate(src.Root, "procs"), "procs", "%v", err)
	}
	c.Procs = n
	return nil
}

// DefaultProcs is how many threads `ferry run` runs Go code on at once
// (GOMAXPROCS) when neither --procs, GOMAXPROCS nor procs: says otherwise.
//
// A gateway's work arrives in small pieces (a poll's reply, a batch to
// publish, an acknowledgement) and waits on the network in between. With a
// second thread allowed, the runtime hands each piece between threads and
// wakes them to look for work, and on a small box that costs more than the
// work: at 10,000 values/s to MQTT, one thread used a fifth less CPU than
// two from Modbus and a tenth less from OPC UA (BENCHMARKS.md). One thread
// carries far more than a gateway sees (the router alone routes over a
// million records/s on it); blocking system calls (a spool's fsync) do not
// hold it, the runtime runs other goroutines on another thread meanwhile.
// Raise it (procs: 2, or auto) where one gateway does heavy parallel work:
// many TLS uplinks with compression, or the embedded NATS server under
// load.
const DefaultProcs = 1

// ParseProcs reads a procs: value or --procs flag: a positive number of
// threads, or "auto" (-1).
func ParseProcs(v string) (int, error) {
	if v == "auto" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1024 {
		return 0, fmt.Errorf("%q is not a number of threads such as 1 or 2, or \"auto\" (as many as the machine or container has CPUs)", v)
	}
	return n, nil
}

// pastedSection catches one connector's settings where a file or the
// connectors: mapping is expected: a README sample pasted as it is. Without
// this, every key of the sample is reported as unknown (twenty lines for
// modbus) or as a connector without settings, and none of them says what
// to do. A type: key holding a registered type is the sign.
func pastedSection(src *conf.Source, n *yaml.Node, path string) *conf.Error {
	typ := conf.MapValue(n, "type")
	if typ == nil || typ.Kind != yaml.ScalarNode {
		return nil
	}
	if _, ok := connectors.Lookup(typ.Value); !ok {
		return nil
	}
	name := typ.Value + "1"
	if path == "" {
		return src.At(conf.MapKey(n, "type"), "type", "this file holds one connector's settings (type: %s) at its top level, as a connector's README shows them; a ferry.yaml puts them under connectors: and a name of your choosing: \"connectors:\", then \"  %s:\", then these lines indented under it", typ.Value, name)
	}
	return src.At(conf.MapKey(n, "type"), conf.Join(path, "type"), "connectors: holds one connector's settings (type: %s) without a name; give it one: \"  %s:\" under connectors:, then these lines indented under it", typ.Value, name)
}

// SpoolDir is where a sink with a local spool keeps it: its
// store_and_forward dir, under the data dir when relative, by default
// <data_dir>/spool/<sink>.
func SpoolDir(dataDir string, m *Module) string {
	switch d := m.Spool.Dir; {
	case d == "":
		return filepath.Join(dataDir, "spool", m.Name)
	case !filepath.IsAbs(d):
		return filepath.Join(dataDir, d)
	default:
		return d
	}
}

// resection finds a module's section again after Load has let the tree go:
// it parses the file's bytes once more and interpolates them with the
// answers the first load got, so the section is the one loaded, whatever
// the environment and secret files say by now. Keeping the bytes (kilobytes)
// instead of the tree (a megabyte for a thousand tags) is what it is for.
func resection(file string, data []byte, rec *conf.Recorder) func(name string) (*conf.Source, *yaml.Node) {
	data = bytes.Clone(data)
	return func(name string) (*conf.Source, *yaml.Node) {
		src, err := conf.Parse(file, data)
		if err != nil {
			return nil, nil
		}
		_ = src.Interpolate(rec.Replay())
		return src, conf.MapValue(conf.MapValue(src.Root, "connectors"), name)
	}
}

func (c *Config) loadModules(src *conf.Source, n *yaml.Node, again func(name string) (*conf.Source, *yaml.Node)) conf.Errors {
	var errs conf.Errors
	if n.Kind == 0 {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return conf.Errors{src.At(n, "connectors", "expected a mapping of connector names to their settings")}
	}
	if e := pastedSection(src, n, "connectors"); e != nil {
		return conf.Errors{e}
	}
	c.unusable = map[string]bool{}
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
			c.unusable[name] = true
			continue
		}
		info, ok := connectors.Lookup(typ.Value)
		if !ok {
			errs = append(errs, src.At(typ, path+".type", "unknown connector type %q; registered types are %s", typ.Value, strings.Join(connectors.Names(), ", ")))
			c.unusable[name] = true
			continue
		}
		m := &Module{Name: name, Type: typ.Value, Info: info, Connector: info.New(), Node: body}
		errs = append(errs, connectors.Decode(src, body, m.Connector, path)...)
		c.Warnings = append(c.Warnings, src.DecimalSizes(body, m.Connector, path)...)
		m.settle()
		m.fresh = func() connectors.Connector {
			// The section decoded once already; it decodes the same again.
			c := info.New()
			if src, body := again(name); body != nil {
				_ = connectors.Decode(src, body, c, path)
			}
			return c
		}
		if sf := conf.MapValue(body, "store_and_forward"); sf != nil {
			errs = append(errs, c.decodeSpool(src, m, sf, path+".store_and_forward")...)
		}
		if bn := conf.MapValue(body, "buffer"); bn != nil {
			errs = append(errs, c.decodeBuffer(src, m, bn, path+".buffer")...)
		}
		errs = append(errs, c.decodeActiveStandby(src, m, body, path)...)
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
	sf := &storeForward{}
	var errs conf.Errors
	if n.Kind == yaml.ScalarNode && (n.Value == "true" || n.Value == "false") {
		if n.Value == "false" {
			return nil
		}
	} else {
		errs = src.Decode(n, sf, path)
		c.Warnings = append(c.Warnings, src.DecimalSizes(n, sf, path)...)
	}
	sc := &sf.Config
	switch sf.Backend {
	case "", BackendLocal:
	case BackendJetStream:
		return append(errs, c.decodeJetStream(src, m, n, sc, path)...)
	default:
		return append(errs, src.At(conf.Locate(n, "backend"), path+".backend", "%q is not one of %s, %s", sf.Backend, BackendLocal, BackendJetStream))
	}
	sc.Name = m.Name
	if sc.Window == 0 {
		sc.Window = spool.DefaultSinkWindow // not the bare spool's 1: a round trip per batch
	}
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
	dc := sf.Drain
	var dp conf.Problems
	if ls := conf.MapValue(conf.MapValue(n, "drain"), "live_share"); ls != nil && dc.LiveShare == 0 {
		// 0 would read as "the default" below; said, it means no live data
		// at all, which is mode ordered.
		dp.Add("drain.live_share", "0 is not a share: want more than 0 and at most 1, e.g. 0.5 (mode ordered sends no live data first)")
	}
	dc.SetDefaults()
	dp.Nest("drain", dc.Validate())
	errs = append(errs, src.Positioned(n, path, dp.Err())...)
	if dc.Mode == outlet.DrainLiveFirst {
		m.Drain = &dc
	}
	return errs
}

// decodeBuffer reads the buffer: section of a sink without a spool: the
// bound of its in-memory outlet.
func (c *Config) decodeBuffer(src *conf.Source, m *Module, n *yaml.Node, path string) conf.Errors {
	switch {
	case !m.IsSink():
		return conf.Errors{src.At(n, path, "only a sink has a buffer; %s (type %s) is not one", m.Name, m.Type)}
	case m.Spool != nil:
		return conf.Errors{src.At(n, path, "%s stores and forwards: its spool is its buffer (bound it with store_and_forward.quota and on_full)", m.Name)}
	}
	bc := &outlet.BufferConfig{}
	errs := src.Decode(n, bc, path)
	c.Warnings = append(c.Warnings, src.DecimalSizes(n, bc, path)...)
	bc.SetDefaults()
	errs = append(errs, src.Positioned(n, path, bc.Validate())...)
	m.Buffer = bc
	return errs
}

// decodeJetStream checks a store_and_forward section that keeps the queue
// in the sink's JetStream stream.
func (c *Config) decodeJetStream(src *conf.Source, m *Module, n *yaml.Node, sc *spool.Config, path string) conf.Errors {
	var errs conf.Errors
	if !c.Bus.NATS() {
		errs = append(errs, src.At(conf.Locate(n, "backend"), path+".backend", "jetstream needs the NATS bus (bus: {type: nats, ...}); use backend: local on a memory bus"))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !jetstreamKeys[k.Value] {
			errs = append(errs, src.At(k, path+"."+k.Value, "a local spool setting; a jetstream queue takes quota, on_full, max_age and window"))
		}
	}
	sc.Dir = "-" // not used; keeps the spool checks on the settings that are
	if sc.Window == 0 {
		sc.Window = spool.DefaultSinkWindow
	}
	sc.SetDefaults()
	for _, e := range conf.Flatten(sc.Validate()) {
		var fe *conf.FieldError
		if errors.As(e, &fe) && jetstreamKeys[strings.SplitN(fe.Path, ".", 2)[0]] {
			errs = append(errs, src.Positioned(n, path, fe)...)
		}
	}
	sc.Dir = ""
	sc.Name = m.Name
	m.Spool, m.JetStream = sc, true
	return errs
}

// decodeActiveStandby reads a connector's active_standby: key. On the NATS
// bus a source is active/standby unless it says otherwise (a listener that
// brownfield software pushes to must run on every box) or is also a sink.
func (c *Config) decodeActiveStandby(src *conf.Source, m *Module, body *yaml.Node, path string) conf.Errors {
	isSource := len(m.Outputs()) > 0
	n := conf.MapValue(body, "active_standby")
	if n == nil {
		m.ActiveStandby = c.Bus.NATS() && isSource && !m.IsSink()
		return nil
	}
	p := path + ".active_standby"
	var on bool
	if err := n.Decode(&on); err != nil {
		return conf.Errors{src.At(n, p, "expected true or false")}
	}
	switch {
	case !on:
	case !c.Bus.NATS():
		return conf.Errors{src.At(n, p, "active/standby needs the NATS bus (bus: {type: nats, ...}), where instances can elect an owner")}
	case !isSource:
		return conf.Errors{src.At(n, p, "only a source can be active/standby; %s (type %s) emits nothing", m.Name, m.Type)}
	case m.IsSink():
		return conf.Errors{src.At(n, p, "%s (type %s) is also a sink; only a source alone can be active/standby", m.Name, m.Type)}
	}
	m.ActiveStandby = on
	return nil
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
