package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

func TestBrowseCmd(t *testing.T) {
	s, err := simopcua.Start(t.Context(), simopcua.Config{Tags: 12, PerLine: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := dispatch(t.Context(), []string{"browse", s.Endpoint(), "--root", s.NodeIDURI("Plant"), "--depth", "2", "--data-dir", dir}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"BROWSENAME", "1:Setpoint", "ns=1;s=Plant/Setpoint", "Double", "rw",
		"1:Limit", "1:Line03", "  1:V00011", "ns=1;s=Plant/Line03/V00011",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "V00001  ") && !strings.Contains(out.String(), "  1:V00001") {
		t.Errorf("depth not shown as indentation:\n%s", out.String())
	}

	// An untrusted server certificate is refused with a way out.
	out.Reset()
	errb.Reset()
	code = dispatch(t.Context(), []string{"browse", s.Endpoint(), "--security", "Basic256Sha256/SignAndEncrypt", "--depth", "1", "--data-dir", dir}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "not trusted") || !strings.Contains(errb.String(), "copy") {
		t.Fatalf("untrusted: exit %d, stderr %q", code, errb.String())
	}
	code = dispatch(t.Context(), []string{"browse", s.Endpoint(), "--security", "Basic256Sha256/SignAndEncrypt", "--depth", "1", "--data-dir", dir, "--trust-on-first-use"}, &out, &errb)
	if code != 0 {
		t.Fatalf("trust on first use: exit %d: %s", code, errb.String())
	}

	if code := dispatch(t.Context(), []string{"browse"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("browse without a URL: exit %d, want 2", code)
	}
	if code := dispatch(t.Context(), []string{"browse", "http://x"}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "opc.tcp") {
		t.Errorf("browse of a non-OPC URL: exit %d, %s", code, errb.String())
	}
}

func TestSimOPCUACmd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, []string{"sim", "opcua", "--addr", "127.0.0.1:0", "--tags", "5", "--interval", "0s"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "opcua sim listening on opc.tcp://127.0.0.1:") || !strings.Contains(line, "5 variables") {
		t.Errorf("first line %q", line)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop")
	}
	if code := dispatch(t.Context(), []string{"sim", "opcua", "--tags", "x"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}
