package admin

import (
	"strings"

	"github.com/gobwas/glob"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router"
)

// Graph is how the pipeline is wired, for the status page to draw: which
// modules are sources, sinks or services, and which sources feed each route.
// It changes only when the config does; counters live in /api/status.
type Graph struct {
	Sources  []string     `json:"sources"`
	Sinks    []string     `json:"sinks"`
	Services []string     `json:"services"`
	Routes   []GraphRoute `json:"routes"`
}

// GraphRoute is one route's ends.
type GraphRoute struct {
	Name string   `json:"name"`
	From []string `json:"from"` // source modules, in config order
	To   []string `json:"to"`
}

// graphOf resolves each route's from globs against the sources' outputs the
// way the router does ("module" alone means "module/*").
func graphOf(c *router.Config) Graph {
	g := Graph{Sources: []string{}, Sinks: []string{}, Services: []string{}, Routes: []GraphRoute{}}
	for _, m := range c.Modules {
		src, sink := len(m.Outputs()) > 0, m.IsSink()
		if src {
			g.Sources = append(g.Sources, m.Name)
		}
		if sink {
			g.Sinks = append(g.Sinks, m.Name)
		}
		if !src && !sink {
			g.Services = append(g.Services, m.Name)
		}
	}
	for _, rc := range c.Routes {
		var pats []*glob.Pattern
		for _, f := range rc.From {
			if !strings.Contains(f, "/") {
				f += "/*"
			}
			if p, err := glob.Compile(f, '/'); err == nil {
				pats = append(pats, p)
			}
		}
		r := GraphRoute{Name: rc.Name, From: []string{}, To: append([]string{}, rc.To...)}
		for _, m := range c.Modules {
			if feeds(m, pats) {
				r.From = append(r.From, m.Name)
			}
		}
		g.Routes = append(g.Routes, r)
	}
	return g
}

func feeds(m *router.Module, pats []*glob.Pattern) bool {
	for _, o := range m.Outputs() {
		for _, p := range pats {
			if p.Match(connectors.Topic(m.Name, o)) {
				return true
			}
		}
	}
	return false
}
