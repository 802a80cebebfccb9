package router

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/glob"
	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router/transform"
	"github.com/ferry-gateway/ferry/router/where"
)

// RouteConfig is one entry of routes: in the file.
type RouteConfig struct {
	Name      string            `yaml:"name"`
	From      conf.StringList   `yaml:"from"`
	Tags      conf.StringList   `yaml:"tags"`
	Where     string            `yaml:"where"`
	Transform []TransformConfig `yaml:"transform"`
	To        conf.StringList   `yaml:"to"`
	Priority  int               `yaml:"priority"`
	TTL       conf.Duration     `yaml:"ttl"`

	compiled *Route
}

// TransformConfig is one step of a route's transform list. Exactly one kind
// is set per step, except scale and offset, which go together.
type TransformConfig struct {
	Scale       *float64       `yaml:"scale"`
	Offset      *float64       `yaml:"offset"`
	Deadband    *Deadband      `yaml:"deadband"`
	Rename      *string        `yaml:"rename"`
	Unit        *string        `yaml:"unit"`
	MinInterval *conf.Duration `yaml:"min_interval"`
}

// Deadband is an absolute amount ("0.5") or a percentage of the last
// forwarded value ("2%").
type Deadband struct {
	Abs, Percent float64
}

func (d *Deadband) UnmarshalYAML(n *yaml.Node) error {
	bad := &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d:%d: deadband %q is not a non-negative number or percentage such as 0.5 or 2%%", n.Line, n.Column, n.Value)}}
	if n.Kind != yaml.ScalarNode {
		return bad
	}
	s := strings.TrimSpace(n.Value)
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || f < 0 || f != f {
		return bad
	}
	if pct {
		d.Percent = f
	} else {
		d.Abs = f
	}
	return nil
}

// transformKinds is what a transform step may be, for messages.
const transformKinds = "scale (with optional offset), offset, deadband, rename, unit, min_interval"

// Route is a compiled route. The engine calls it from one goroutine only,
// which is what lets transforms keep per-tag state without locks.
type Route struct {
	Name     string
	Priority int
	TTL      time.Duration
	To       []string

	from  []*glob.Pattern
	tags  []*glob.Pattern
	where where.Predicate
	steps []transform.Middleware

	// Counters. HeldBack: records a transform did not pass on (deadband,
	// rate limit), as the status page says; Filtered: where was false.
	Matched, Filtered, Forwarded, HeldBack, Expired atomic.Uint64
}

// matchesTopic reports whether the route takes input from topic.
func (r *Route) matchesTopic(topic string) bool {
	for _, g := range r.from {
		if g.Match(topic) {
			return true
		}
	}
	return false
}

func (r *Route) matchesTag(tag string) bool {
	if len(r.tags) == 0 {
		return true
	}
	for _, g := range r.tags {
		if g.Match(tag) {
			return true
		}
	}
	return false
}

// Routes returns the compiled routes in file order.
func (c *Config) CompiledRoutes() []*Route {
	out := make([]*Route, len(c.Routes))
	for i, rc := range c.Routes {
		out[i] = rc.compiled
	}
	return out
}

// compileRouteConfigs compiles every route, checking names, globs,
// expressions, transforms and the modules it names against the config.
func (c *Config) compileRouteConfigs(src *conf.Source) conf.Errors {
	var errs conf.Errors
	at := func(path, format string, args ...any) {
		errs = append(errs, src.At(conf.Locate(src.Root, path), path, format, args...))
	}
	topics := c.sourceTopics()
	sinks := c.sinkNames()
	names := map[string]bool{}
	for i, rc := range c.Routes {
		if rc == nil {
			at(fmt.Sprintf("routes[%d]", i), "empty route; expected from, to and optionally name, tags, where, transform, priority, ttl")
			continue
		}
		p := fmt.Sprintf("routes[%d]", i)
		if rc.Name == "" {
			rc.Name = "route" + strconv.Itoa(i+1)
		}
		if names[rc.Name] {
			at(p+".name", "route name %q is used twice", rc.Name)
		}
		names[rc.Name] = true
		r := &Route{Name: rc.Name, Priority: rc.Priority, TTL: rc.TTL.D(), To: rc.To}
		rc.compiled = r

		if len(rc.From) == 0 {
			at(p, "missing from; expected a source output such as %s (module/output, globs allowed)", example(topics))
		}
		for j, f := range rc.From {
			fp := fmt.Sprintf("%s.from", p)
			if len(rc.From) > 1 {
				fp = fmt.Sprintf("%s.from[%d]", p, j)
			}
			if !strings.Contains(f, "/") {
				f += "/*"
			}
			g, err := glob.Compile(f, '/')
			if err != nil {
				at(fp, "%q is not a valid glob: %v", f, err)
				continue
			}
			r.from = append(r.from, g)
			if !anyMatch(g, topics) && !c.unusable[strings.SplitN(rc.From[j], "/", 2)[0]] {
				at(fp, "%q matches no source output; source outputs are %s", rc.From[j], listOrNone(topics))
			}
		}
		for j, t := range rc.Tags {
			g, err := glob.Compile(t, '/')
			if err != nil {
				at(fmt.Sprintf("%s.tags[%d]", p, j), "%q is not a valid glob: %v", t, err)
				continue
			}
			r.tags = append(r.tags, g)
		}
		if strings.TrimSpace(rc.Where) != "" {
			pred, err := where.Compile(rc.Where)
			if err != nil {
				n := conf.Locate(src.Root, p+".where")
				e := src.At(n, p+".where", "expression does not compile: %v", err)
				e.Col += exprColumn(n, err)
				errs = append(errs, e)
			}
			r.where = pred
		}
		for j, tc := range rc.Transform {
			m, err := tc.compile()
			if err != nil {
				at(fmt.Sprintf("%s.transform[%d]", p, j), "%v", err)
				continue
			}
			r.steps = append(r.steps, m...)
		}
		if len(rc.To) == 0 {
			at(p, "missing to; expected one or more sinks: %s", listOrNone(sinks))
		}
		for j, t := range rc.To {
			tp := p + ".to"
			if len(rc.To) > 1 {
				tp = fmt.Sprintf("%s.to[%d]", p, j)
			}
			switch m := c.Module(t); {
			case m == nil && c.unusable[t]:
				// its section is reported already
			case m == nil:
				at(tp, "unknown module %q; sinks are %s", t, listOrNone(sinks))
			case !m.IsSink():
				at(tp, "module %q (type %s) is not a sink; sinks are %s", t, m.Type, listOrNone(sinks))
			}
		}
	}
	return errs
}

func (tc TransformConfig) compile() ([]transform.Middleware, error) {
	var out []transform.Middleware
	n := 0
	if tc.Scale != nil || tc.Offset != nil {
		n++
		scale, offset := 1.0, 0.0
		if tc.Scale != nil {
			scale = *tc.Scale
		}
		if tc.Offset != nil {
			offset = *tc.Offset
		}
		out = append(out, transform.Scale(scale, offset))
	}
	if tc.Deadband != nil {
		n++
		out = append(out, transform.Deadband(tc.Deadband.Abs, tc.Deadband.Percent))
	}
	if tc.Rename != nil {
		n++
		m, err := transform.Rename(*tc.Rename)
		if err != nil {
			return nil, fmt.Errorf("rename: %w", err)
		}
		out = append(out, m)
	}
	if tc.Unit != nil {
		n++
		out = append(out, transform.SetUnit(*tc.Unit))
	}
	if tc.MinInterval != nil {
		n++
		out = append(out, transform.MinInterval(tc.MinInterval.D()))
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("empty transform step; expected one of %s", transformKinds)
	case n > 1:
		return nil, fmt.Errorf("a transform step holds one kind; split it into one list item each (%s)", transformKinds)
	}
	return out, nil
}

var exprPos = regexp.MustCompile(`\(line 1, column (\d+)\)`)

// exprColumn is how far into the where: value expr's error points, so the
// reported column is the offending token itself. Only single-line plain or
// quoted scalars map one to one onto the file.
func exprColumn(n *yaml.Node, err error) int {
	m := exprPos.FindStringSubmatch(err.Error())
	if m == nil || n == nil || strings.Contains(n.Value, "\n") {
		return 0
	}
	c, _ := strconv.Atoi(m[1])
	switch n.Style {
	case 0:
		return c - 1
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return c
	}
	return 0
}

func anyMatch(g *glob.Pattern, list []string) bool {
	for _, s := range list {
		if g.Match(s) {
			return true
		}
	}
	return false
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none configured)"
	}
	return strings.Join(l, ", ")
}

func example(l []string) string {
	if len(l) == 0 {
		return "gen/out"
	}
	return l[0]
}

// linkTypes are the connector types whose sink sends across a network link
// that comes and goes (a cloud broker, an HTTP endpoint), unless pointed at
// this machine. A file sink or the local broker has no link to lose.
var linkTypes = map[string]bool{"mqtt": true, "http": true}

// flowWarnings finds what loads but loses records: a source no route reads
// (its records are dropped as they come), and an uplink without
// store_and_forward (its records are held in memory while the link is down,
// and lost when that fills or at a restart).
func (c *Config) flowWarnings(src *conf.Source) []*conf.Warning {
	var out []*conf.Warning
	sections := conf.MapValue(src.Root, "connectors")
	targets := map[string]bool{}
	for _, rc := range c.Routes {
		if rc == nil {
			continue
		}
		for _, t := range rc.To {
			targets[t] = true
		}
	}
	for _, m := range c.Modules {
		key := conf.MapKey(sections, m.Name)
		path := "connectors." + m.Name
		var unread []string
		for _, o := range m.Outputs() {
			topic := connectors.Topic(m.Name, o)
			read := false
			for _, rc := range c.Routes {
				if rc != nil && rc.compiled != nil && rc.compiled.matchesTopic(topic) {
					read = true
					break
				}
			}
			if !read {
				unread = append(unread, topic)
			}
		}
		if len(unread) > 0 {
			out = append(out, src.Warn(key, path, "source %s is routed nowhere: no route reads %s, so its records are dropped as they come; add a route (from: %s, to: a sink)", m.Name, strings.Join(unread, ", "), m.Name))
		}
		if targets[m.Name] && m.IsSink() && linkTypes[m.Type] && m.Spool == nil && !loopback(conf.MapValue(m.Node, "url")) {
			out = append(out, src.Warn(key, path, "%s (type %s) sends across a link without store_and_forward: while the link is down its batches wait in memory only, dropped once the buffer is full and lost at a restart; add store_and_forward: true to spool them on disk", m.Name, m.Type))
		}
	}
	return out
}

// loopback reports whether a url: value names this machine, which a sink
// reaches without crossing a link.
func loopback(n *yaml.Node) bool {
	if n == nil {
		return false
	}
	u, err := url.Parse(n.Value)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
