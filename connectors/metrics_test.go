package connectors

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type nopConnector struct{}

func (nopConnector) Validate() error                   { return nil }
func (nopConnector) Start(context.Context, *Env) error { return nil }
func (nopConnector) Stop(context.Context) error        { return nil }

func init() {
	for _, i := range []Info{
		{Name: "metrics-test-uplink", Roles: RoleSink},
		{Name: "metrics-test-file", Roles: RoleSink, Local: true},
		{Name: "metrics-test-broker", Roles: RoleSink | RoleSource | RoleService},
		{Name: "metrics-test-source", Roles: RoleSource},
	} {
		i.New = func() Connector { return nopConnector{} }
		Register(i)
	}
}

// TestSeriesOnlyWhereTheyMeanSomething: sink counters for sinks only, and
// ferry_link_up for sinks that cross a link (issue 15: sources had sink
// counters, file sinks a link gauge).
func TestSeriesOnlyWhereTheyMeanSomething(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, c := range []EnvConfig{
		{Name: "cloud", Type: "metrics-test-uplink", Sink: true},
		{Name: "archive", Type: "metrics-test-file", Sink: true},
		{Name: "local", Type: "metrics-test-broker", Sink: true, Outputs: []string{"out"}},
		{Name: "gen", Type: "metrics-test-source", Outputs: []string{"out"}},
		{Name: "mystery", Type: "not-registered", Sink: true}, // a link unless known otherwise
	} {
		c.Metrics = m
		env, err := NewEnv(c)
		if err != nil {
			t.Fatal(err)
		}
		env.Up()
		env.Sent(3)
		env.Retry()
		env.Down(errors.New("gone"))
	}
	got := map[string][]string{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				got[mf.GetName()] = append(got[mf.GetName()], l.GetValue())
			}
		}
	}
	for name, want := range map[string][]string{
		"ferry_sink_sent_total":    {"archive", "cloud", "local", "mystery"},
		"ferry_sink_retries_total": {"archive", "cloud", "local", "mystery"},
		"ferry_link_up":            {"cloud", "mystery"},
		"ferry_connector_up":       {"archive", "cloud", "gen", "local", "mystery"},
	} {
		slices.Sort(got[name])
		if !slices.Equal(got[name], want) {
			t.Errorf("%s for %v, want %v", name, got[name], want)
		}
	}
}
