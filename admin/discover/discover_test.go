package discover

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	_ "github.com/ferry-gateway/ferry/connectors/modbus"
	_ "github.com/ferry-gateway/ferry/connectors/opcua"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/router"
	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

func TestScanModbusDecodesEveryOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cfg := simmodbus.DemoConfig()
	cfg.Addr = "127.0.0.1:0"
	s, err := simmodbus.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Unit(1).HoldingRegisters().SetFloat32(20, 12.5, simmodbus.CDAB)
	res, err := ScanModbus(ctx, Scan{Endpoint: "tcp://" + s.Addr(), Unit: 1, Area: "holding", First: 18, Count: 6, Timeout: 2 * time.Second})
	if err != nil || res.Error != "" {
		t.Fatalf("scan: %v %s", err, res.Error)
	}
	if len(res.Registers) != 6 {
		t.Fatalf("%d registers", len(res.Registers))
	}
	r := res.Registers[2]
	if r.Address != 20 || r.Modicon != "40021" || r.Pairs["float32 CDAB"] != "12.5" {
		t.Errorf("register 20: %+v", r)
	}
	if res.Registers[5].Pairs != nil {
		t.Error("the last register has pairs with a register not read")
	}
	bits, err := ScanModbus(ctx, Scan{Endpoint: "tcp://" + s.Addr(), Unit: 1, Area: "coil", First: 0, Count: 2})
	if err != nil || len(bits.Registers) != 2 || bits.Registers[0].Bit == nil || !*bits.Registers[0].Bit {
		t.Fatalf("coils: %v %+v", err, bits)
	}
	for _, bad := range []Scan{
		{Endpoint: "tcp://" + s.Addr(), Area: "holdings", Count: 1},
		{Endpoint: "tcp://" + s.Addr(), Area: "holding", First: 65535, Count: 2},
		{Endpoint: "tcp://" + s.Addr(), Area: "holding", Count: MaxScan + 1},
		{Endpoint: "ftp://x", Area: "holding", Count: 1},
	} {
		if _, err := ScanModbus(ctx, bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestBrowseLevelAndSnippetLoads(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := simopcua.Start(ctx, simopcua.Config{Addr: "127.0.0.1:0", Tags: 5, PerLine: 5, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := Browse{Endpoint: s.Endpoint(), Dir: t.TempDir(), Timeout: 5 * time.Second}
	top, err := BrowseLevel(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var plant string
	for _, n := range top {
		if strings.HasSuffix(n.BrowseName, "Plant") {
			plant = n.NodeID
		}
	}
	if plant == "" {
		t.Fatalf("no Plant under Objects: %+v", top)
	}
	// Lazily: one level a call, Line01 under Plant, its variables under it.
	var vars []Node
	for level, node := 0, plant; level < 3 && len(vars) == 0; level++ {
		b.Node = node
		kids, err := BrowseLevel(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kids {
			if k.NodeClass == "Variable" {
				vars = append(vars, k)
			} else if node == b.Node {
				node = k.NodeID
			}
		}
	}
	if len(vars) == 0 {
		t.Fatal("no variables found under Plant")
	}
	v := vars[0]
	if v.DataType == "" || v.Access == "" || v.Value == "" {
		t.Errorf("variable without type, access or value: %+v", v)
	}
	sn := Snippet{Kind: "opcua", Name: "line1", Endpoint: s.Endpoint(), Device: "line-1"}
	for _, v := range vars {
		sn.Nodes = append(sn.Nodes, PickedNode{ID: v.NodeID, Name: TagName(v.NodeID)})
	}
	text, err := sn.YAML()
	if err != nil {
		t.Fatalf("snippet does not load: %v\n%s", err, text)
	}
	if !strings.Contains(text, "type: opcua") || !strings.Contains(text, vars[0].NodeID) {
		t.Errorf("snippet:\n%s", text)
	}
}

func TestModbusSnippetLoadsAndBadOnesSayWhy(t *testing.T) {
	sn := Snippet{Kind: "modbus", Name: "press", Endpoint: "tcp://127.0.0.1:5020", Unit: 1, Registers: []PickedRegister{
		{Name: "oven/temperature", Area: "holding", Address: 0, Type: "float32", ByteOrder: "CDAB"},
		{Name: "pump/run", Area: "coil", Address: 0, Writable: true},
	}}
	text, err := sn.YAML()
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if _, err := router.Load("x.yaml", []byte(text), conf.Resolver{}); err != nil {
		t.Fatalf("what is shown does not load: %v", err)
	}
	sn.Registers[0].Type = "float33"
	if _, err := sn.YAML(); err == nil || !strings.Contains(err.Error(), "float33") {
		t.Errorf("a bad type: %v", err)
	}
	if _, err := (&Snippet{Kind: "opcua"}).YAML(); !errors.Is(err, ErrNothingPicked) {
		t.Errorf("empty: %v", err)
	}
}
