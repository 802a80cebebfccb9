package http

import (
	nethttp "net/http"
	"net/http/httptest"
	"testing"

	"github.com/ferry-gateway/ferry/connectors/conntest"
)

// A batch the outlet sends from a backlog behind newer data (drain mode
// live-first) says so in a header; any other batch does not.
func TestBackfillHeader(t *testing.T) {
	var got []string
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		got = append(got, r.Header.Get("X-Ferry-Backfill"))
		w.WriteHeader(204)
	}))
	defer srv.Close()
	h, env := newSink(t, srv.URL, nil)
	if err := h.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	for _, backfill := range []bool{true, false} {
		b := conntest.SampleBatch(2)
		b.Backfill = backfill
		if err := h.Write(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "true" || got[1] != "" {
		t.Fatalf("X-Ferry-Backfill headers %q, want [true \"\"]", got)
	}
}
