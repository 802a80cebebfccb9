package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gobwas/glob"

	"github.com/ferry-gateway/ferry/admin/discover"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/router/lvc"
)

// EventWrite is the kind of the event a write from the page leaves.
const EventWrite = "write"

// Commissioning limits.
const (
	writeTTL        = 10 * time.Second // a page's write older than this is refused
	discoverTimeout = 20 * time.Second
	maxBody         = 1 << 20
)

// WritableTagger is what a connector may say about a tag before a write:
// writable, and whether it knows the tag at all. The page shows a write
// field where a writer does not say no.
type WritableTagger interface {
	TagWritable(device, tag string) (writable, known bool)
}

func (a *Admin) commissionRoutes() {
	mux, p := a.mux, a.p
	// Tags: ?source=&device=&q=GLOB&quality=&stale=true|false&offset=&limit=
	mux.HandleFunc("GET /api/tags", func(w http.ResponseWriter, r *http.Request) {
		q, err := tagQuery(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, p.Tags().Query(q), false)
	})
	mux.HandleFunc("GET /api/tag", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		t, ok := p.Tags().Get(lvc.Key{Source: v.Get("source"), Device: v.Get("device"), Tag: v.Get("tag")})
		if !ok {
			http.Error(w, "no such tag in the cache", http.StatusNotFound)
			return
		}
		writeJSON(w, tagDetail{Tag: t, Writable: a.writable(t.Source, t.Device, t.Tag)}, false)
	})
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.devices(), true)
	})
	mux.HandleFunc("POST /api/write", a.handleWrite)
	mux.HandleFunc("POST /api/discover/modbus", a.handleScan)
	mux.HandleFunc("POST /api/discover/opcua", a.handleBrowse)
	mux.HandleFunc("POST /api/discover/snippet", a.handleSnippet)
}

type tagDetail struct {
	lvc.Tag
	// Writable: "yes", "no" or "maybe" (a writer that cannot say before
	// trying, such as an OPC UA server).
	Writable string `json:"writable"`
}

func tagQuery(r *http.Request) (lvc.Query, error) {
	v := r.URL.Query()
	q := lvc.Query{Source: v.Get("source"), Device: v.Get("device"), Quality: v.Get("quality")}
	var err error
	if s := v.Get("offset"); s != "" {
		if q.Offset, err = strconv.Atoi(s); err != nil || q.Offset < 0 {
			return q, fmt.Errorf("bad offset %q: want a whole number", s)
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 {
			return q, fmt.Errorf("bad limit %q: want 1..%d", s, lvc.MaxLimit)
		}
	}
	switch s := v.Get("stale"); s {
	case "":
	case "true", "false":
		b := s == "true"
		q.Stale = &b
	default:
		return q, fmt.Errorf("bad stale %q: want true or false", s)
	}
	if s := v.Get("q"); s != "" {
		pat := s
		if !hasMeta(s) {
			pat = "*" + s + "*" // a plain word finds the tags that contain it
		}
		g, err := glob.Compile(pat)
		if err != nil {
			return q, fmt.Errorf("bad q %q: %v", s, err)
		}
		q.Match = g.Match
	}
	return q, nil
}

func hasMeta(s string) bool {
	for _, c := range s {
		switch c {
		case '*', '?', '[', '{':
			return true
		}
	}
	return false
}

// Device is a row of the devices list: the cache's view of it and its
// connector's state.
type Device struct {
	lvc.DeviceSummary
	Type  string `json:"type"`
	Phase string `json:"phase"`
	// LastError is the connector's latest error, in full.
	LastError string `json:"last_error,omitempty"`
}

// Devices is what /api/devices answers.
type Devices struct {
	// Commissioning: writes and discovery are allowed (authentication
	// is on, or the endpoint is on loopback).
	Commissioning bool     `json:"commissioning"`
	Devices       []Device `json:"devices"`
	// Diagnostics are the connectors' own counters (Modbus requests,
	// exceptions, timeouts, latency, learned limits; OPC UA session and
	// subscriptions), by module.
	Diagnostics map[string]any `json:"diagnostics"`
}

func (a *Admin) devices() Devices {
	st := a.p.Status()
	cfg := a.p.Config().Admin
	out := Devices{Commissioning: cfg.Commissioning(), Devices: []Device{}, Diagnostics: map[string]any{}}
	mods := map[string]int{}
	for i, m := range st.Modules {
		mods[m.Name] = i
		if m.Diagnostics != nil {
			out.Diagnostics[m.Name] = m.Diagnostics
		}
	}
	for _, d := range a.p.Tags().Devices() {
		dv := Device{DeviceSummary: d}
		if i, ok := mods[d.Source]; ok {
			m := st.Modules[i]
			dv.Type, dv.Phase, dv.LastError = m.Type, string(m.Phase), m.LastError
		}
		out.Devices = append(out.Devices, dv)
	}
	return out
}

func (a *Admin) writable(source, device, tag string) string {
	c := a.p.Connector(source)
	if _, ok := c.(connectors.Writer); !ok {
		return "no"
	}
	if wt, ok := c.(WritableTagger); ok {
		if w, known := wt.TagWritable(device, tag); known {
			if w {
				return "yes"
			}
			return "no"
		}
	}
	return "maybe"
}

// commissioning refuses writes and discovery on an endpoint anyone on the
// network may reach without logging in.
func (a *Admin) commissioning(w http.ResponseWriter) bool {
	if a.p.Config().Admin.Commissioning() {
		return true
	}
	http.Error(w, "writes and discovery are off: the admin endpoint is off loopback without authentication (set admin.auth)", http.StatusForbidden)
	return false
}

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// WriteRequest is a write from the page.
type WriteRequest struct {
	Source string          `json:"source"` // the module, for the event
	Device string          `json:"device"`
	Tag    string          `json:"tag"`
	Value  json.RawMessage `json:"value"`
}

// WriteResult is its outcome, as an MQTT command's: ok, refused (it never
// reached the device) or failed.
type WriteResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (a *Admin) handleWrite(w http.ResponseWriter, r *http.Request) {
	if !a.commissioning(w) {
		return
	}
	var req WriteRequest
	if !readBody(w, r, &req) {
		return
	}
	res := a.write(r.Context(), req)
	writeJSON(w, res, false)
}

func (a *Admin) write(ctx context.Context, req WriteRequest) WriteResult {
	err := func() error {
		if req.Device == "" || req.Tag == "" {
			return fmt.Errorf("%w: device and tag are needed", command.ErrRefused)
		}
		// Read as an MQTT command's value is, so both write paths agree.
		v, err := command.Value(req.Value)
		if err != nil {
			return fmt.Errorf("%w: value: %v", command.ErrRefused, err)
		}
		// The same bound as an MQTT command's TTL: a write held up this
		// long is no longer what the person meant.
		wctx, cancel := context.WithTimeout(ctx, writeTTL)
		defer cancel()
		return a.p.WriteTag(wctx, req.Device, req.Tag, v)
	}()
	// One rule for refused and failed, the MQTT commands' (connectors/command).
	cr := command.NewResult(&command.Command{Device: req.Device, Tag: req.Tag}, err)
	res := WriteResult{Status: cr.Status, Error: cr.Error}
	a.p.EventLog().Add(connectors.Event{
		Module: req.Source, Kind: EventWrite,
		Message: fmt.Sprintf("write from the page: %s/%s = %s: %s", req.Device, req.Tag, bytes.TrimSpace(req.Value), res.Status),
		Error:   res.Error,
	})
	return res
}

func (a *Admin) handleScan(w http.ResponseWriter, r *http.Request) {
	if !a.commissioning(w) {
		return
	}
	var s discover.Scan
	if !readBody(w, r, &s) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), discoverTimeout)
	defer cancel()
	s.Timeout = 2 * time.Second
	res, err := discover.ScanModbus(ctx, s)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, res, false)
}

func (a *Admin) handleBrowse(w http.ResponseWriter, r *http.Request) {
	if !a.commissioning(w) {
		return
	}
	var b discover.Browse
	if !readBody(w, r, &b) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), discoverTimeout)
	defer cancel()
	// The page's certificate and trust list, apart from the connectors':
	// trusting a server here does not make a connector trust it.
	b.Dir = filepath.Join(a.p.Config().DataDir, "browse", "pki")
	b.Timeout = 10 * time.Second
	nodes, err := discover.BrowseLevel(ctx, b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for i := range nodes {
		nodes[i].Depth = 0
	}
	writeJSON(w, struct {
		Nodes []discover.Node `json:"nodes"`
	}{nodes}, false)
}

// SnippetResult is a connector section, checked by the loader.
type SnippetResult struct {
	YAML  string `json:"yaml"`
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

func (a *Admin) handleSnippet(w http.ResponseWriter, r *http.Request) {
	if !a.commissioning(w) {
		return
	}
	var s discover.Snippet
	if !readBody(w, r, &s) {
		return
	}
	text, err := s.YAML()
	res := SnippetResult{YAML: text, Valid: err == nil}
	if err != nil {
		res.Error = err.Error()
	}
	writeJSON(w, res, false)
}
