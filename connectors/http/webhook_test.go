package http

import (
	"bytes"
	"context"
	"io"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

func TestWebhook(t *testing.T) {
	h := &HTTP{Config: Config{Listen: "127.0.0.1:0", Token: "t0ken", MaxBody: 1024, BatchInterval: conf.Duration(5 * time.Millisecond)}}
	h.SetDefaults()
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := bus.NewMemory(nil)
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "hook", DataDir: t.TempDir(), Publisher: ps, Outputs: h.Outputs()})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := ps.Subscribe(t.Context(), "hook/out")
	if err := h.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = ps.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Stop(ctx)
		_ = env.Shutdown(ctx)
	}()
	url := "http://" + h.WebhookAddr() + "/ingest"
	post := func(token, body string) (int, string) {
		t.Helper()
		req, _ := nethttp.NewRequest("POST", url, bytes.NewBufferString(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		token, body string
		code        int
		answer      string
	}{
		{"t0ken", `{"device":"m1","tag":"temp","value":21.5}`, 202, `"accepted":1`},
		{"t0ken", `[{"device":"m1","tag":"a","value":1},{"device":"m1","tag":"b","value":2}]`, 202, `"accepted":2`},
		{"wrong", `{"tag":"x","value":1}`, 401, "bearer token"},
		{"", `{"tag":"x","value":1}`, 401, "bearer token"},
		{"t0ken", `{"tag":"x","value":`, 400, "parse error"},
		{"t0ken", `{"tag":"x","value":"` + strings.Repeat("a", 2000) + `"}`, 413, "larger than"},
		{"t0ken", `{"device":"m1","tag":"after","value":3}`, 202, `"accepted":1`},
	} {
		code, answer := post(c.token, c.body)
		if code != c.code || !strings.Contains(answer, c.answer) {
			t.Errorf("%.40s: %d %q, want %d %q", c.body, code, answer, c.code, c.answer)
		}
	}
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < 4 {
		select {
		case m := <-msgs:
			var b bus.Batch
			if err := new(bus.Decoder).DecodeMessage(m, &b); err != nil {
				t.Fatal(err)
			}
			m.Ack()
			for _, r := range b.Records {
				got[r.Tag] = true
			}
		case <-deadline:
			t.Fatalf("records: %v", got)
		}
	}
	if !got["temp"] || !got["a"] || !got["b"] || !got["after"] || got["x"] {
		t.Fatalf("records: %v", got)
	}
}
