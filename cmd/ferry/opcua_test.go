package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors/opcua"
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

	// An untrusted server certificate is refused with a way out, and
	// ferry trust lists it and trusts it.
	out.Reset()
	errb.Reset()
	code = dispatch(t.Context(), []string{"browse", s.Endpoint(), "--security", "Basic256Sha256/SignAndEncrypt", "--depth", "1", "--data-dir", dir}, &out, &errb)
	tp := opcua.Thumbprint(s.Certificate())
	if code != 1 || !strings.Contains(errb.String(), "not trusted") || !strings.Contains(errb.String(), "ferry trust accept "+tp[:16]) {
		t.Fatalf("untrusted: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := dispatch(t.Context(), []string{"trust", "list", "--data-dir", dir}, &out, &errb); code != 0 || !regexp.MustCompile(`browse/pki\s+rejected\s+`+tp+`\s+.*urn:ferry:sim:opcua`).MatchString(out.String()) {
		t.Fatalf("trust list: exit %d:\n%s", code, out.String())
	}
	out.Reset()
	errb.Reset()
	if code := dispatch(t.Context(), []string{"trust", "accept", "0000000000", "--data-dir", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no certificate") {
		t.Errorf("trust accept of an unknown thumbprint: exit %d, %s", code, errb.String())
	}
	if code := dispatch(t.Context(), []string{"trust", "accept", tp[:12], "--data-dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "trusted") {
		t.Fatalf("trust accept: exit %d: %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	code = dispatch(t.Context(), []string{"browse", s.Endpoint(), "--security", "Basic256Sha256/SignAndEncrypt", "--depth", "1", "--data-dir", dir}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "1:Plant") {
		t.Fatalf("browse after trust accept: exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := dispatch(t.Context(), []string{"trust", "list", "--pki", filepath.Join(dir, "browse", "pki")}, &out, &errb); code != 0 || !regexp.MustCompile(`trusted\s+`+tp).MatchString(out.String()) {
		t.Fatalf("trust list --pki after accept: exit %d:\n%s", code, out.String())
	}

	// A root that does not exist is an error, not an empty table.
	out.Reset()
	errb.Reset()
	code = dispatch(t.Context(), []string{"browse", s.Endpoint(), "--root", s.NodeIDURI("Plant/Nope")}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no such node") || strings.Contains(out.String(), "BROWSENAME") {
		t.Errorf("browse of a missing root: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := dispatch(t.Context(), []string{"browse", s.Endpoint(), "--root", "nsu=urn:nobody;s=X"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no such node") {
		t.Errorf("browse of a root in an unknown namespace: exit %d, %s", code, errb.String())
	}

	if code := dispatch(t.Context(), []string{"browse"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("browse without a URL: exit %d, want 2", code)
	}
	if code := dispatch(t.Context(), []string{"browse", "http://x"}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "opc.tcp") {
		t.Errorf("browse of a non-OPC URL: exit %d, %s", code, errb.String())
	}
}

// TestBrowseDefaults: from the Objects folder the Server object is left
// out unless asked for (and then its variables show a data type), and an
// anonymous browse writes nothing into the working directory.
func TestBrowseDefaults(t *testing.T) {
	s, err := simopcua.Start(t.Context(), simopcua.Config{Tags: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wd := t.TempDir()
	t.Chdir(wd)
	var out, errb bytes.Buffer
	if code := dispatch(t.Context(), []string{"browse", s.Endpoint(), "--depth", "2"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "i=2253") || !strings.Contains(out.String(), "1:Plant") {
		t.Errorf("default browse shows the Server object or lacks Plant:\n%s", out.String())
	}
	if entries, _ := os.ReadDir(wd); len(entries) != 0 {
		t.Errorf("browse wrote %v into the working directory", entries)
	}
	out.Reset()
	if code := dispatch(t.Context(), []string{"browse", s.Endpoint(), "--depth", "2", "--server"}, &out, &errb); code != 0 {
		t.Fatalf("--server: exit %d: %s", code, errb.String())
	}
	// gopcua's server gives no DataType attribute for its own nodes: the
	// type comes from the value.
	if !regexp.MustCompile(`NamespaceArray\s+Variable\s+i=2255\s+String\[\]`).MatchString(out.String()) {
		t.Errorf("--server: no Server object with typed variables:\n%s", out.String())
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
