package main

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	httpconn "github.com/ferry-gateway/ferry/connectors/http"
	"github.com/ferry-gateway/ferry/router"
)

// TestDeadletterReplay: a batch the far side refused with 400 is listed by
// `ferry deadletter list` and delivered by `ferry deadletter replay` once
// the far side takes it; the dead-letter file is then empty.
func TestDeadletterReplay(t *testing.T) {
	var status atomic.Int32
	status.Store(400)
	var got atomic.Int32
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		body, _ := io.ReadAll(r.Body)
		if s := status.Load(); s != 200 {
			nethttp.Error(w, "schema mismatch", int(s))
			return
		}
		got.Add(int32(strings.Count(string(body), "\n")))
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	cfgText := "data_dir: " + filepath.Join(dir, "data") + "\nconnectors:\n  gen:\n    type: generator\n    tags: [{name: t}]\n  cloud:\n    type: http\n    url: " + srv.URL +
		"\n    format: json-lines\nroutes:\n  - from: gen\n    to: cloud\n"
	if err := os.WriteFile(file, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	// What a running ferry does with a refused batch.
	cfg, err := router.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var h *httpconn.HTTP
	for _, m := range cfg.Modules {
		if m.Name == "cloud" {
			h = m.Connector.(*httpconn.HTTP)
		}
	}
	if err := h.DeadLetters(t.Context(), "cloud", cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	b := conntest.SampleBatch(3)
	if err := h.Write(t.Context(), &b); !errors.Is(err, connectors.ErrPoison) {
		t.Fatalf("400: %v, want a dead letter", err)
	}
	_ = h.Stop(context.Background())

	var out, errs strings.Builder
	if code := dispatch(t.Context(), []string{"deadletter", "list", "-c", file}, &out, &errs); code != 0 || !strings.Contains(out.String(), "400") {
		t.Fatalf("list: %d %q %q", code, out.String(), errs.String())
	}
	status.Store(200)
	out.Reset()
	if code := dispatch(t.Context(), []string{"deadletter", "replay", "-c", file}, &out, &errs); code != 0 {
		t.Fatalf("replay: %d %q %q", code, out.String(), errs.String())
	}
	if got.Load() != 3 {
		t.Errorf("%d records delivered by the replay, want 3 (%s)", got.Load(), out.String())
	}
	out.Reset()
	_ = dispatch(t.Context(), []string{"deadletter", "list", "-c", file}, &out, &errs)
	if strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Errorf("still listed after the replay:\n%s", out.String())
	}
}
