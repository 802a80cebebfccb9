package connectors

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

type nop struct{}

func (nop) Validate() error                   { return nil }
func (nop) Start(context.Context, *Env) error { return nil }
func (nop) Stop(context.Context) error        { return nil }

func TestRegisterPanicsOnProgrammingErrors(t *testing.T) {
	newNop := func() Connector { return nop{} }
	Register(Info{Name: "test-nop", Roles: RoleSink, New: newNop})
	for name, info := range map[string]Info{
		"empty name": {Roles: RoleSink, New: newNop},
		"nil New":    {Name: "x", Roles: RoleSink},
		"no role":    {Name: "y", New: newNop},
		"duplicate":  {Name: "test-nop", Roles: RoleSink, New: newNop},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			Register(info)
		})
	}
	if _, ok := Lookup("test-nop"); !ok {
		t.Fatal("registered type not found")
	}
	if !strings.Contains(UnknownTypeError("zz").Error(), "test-nop") {
		t.Fatal("unknown-type error does not list the registered types")
	}
}

func TestBackoffGrowsWithJitterAndCaps(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for i, hi := range []time.Duration{10, 20, 40, 80, 80, 80} {
		hi *= time.Millisecond
		d := b.Next()
		if d < hi/2 || d > hi {
			t.Fatalf("attempt %d: %v not in [%v, %v]", i, d, hi/2, hi)
		}
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestEnvGoRecoversAndRestarts(t *testing.T) {
	env, err := NewEnv(EnvConfig{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	runs := 0
	env.Go("loop", func(ctx context.Context) error {
		runs++
		switch runs {
		case 1:
			panic("boom")
		case 2:
			return errors.New("device gone")
		}
		close(done)
		<-ctx.Done()
		return nil
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loop not restarted after a panic and an error")
	}
	s := env.State().Snapshot()
	if s.Errors != 2 || !strings.Contains(s.LastError, "device gone") {
		t.Fatalf("state %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := env.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEmitStampsAndRefusesUndeclaredOutput(t *testing.T) {
	ps := bus.NewMemory(nil)
	defer ps.Close()
	env, err := NewEnv(EnvConfig{Name: "m", DataDir: t.TempDir(), Publisher: ps})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.EmitTo(t.Context(), "nope", nil); err != nil {
		t.Fatalf("empty batch should be a no-op: %v", err)
	}
	b := &bus.Batch{Records: []bus.Record{{Tag: "a"}, {Tag: "b", SourceTime: 5}}}
	if err := env.EmitTo(t.Context(), "nope", b); err == nil || !strings.Contains(err.Error(), "undeclared output") {
		t.Fatalf("undeclared output: %v", err)
	}
	msgs, _ := ps.Subscribe(t.Context(), "m/out")
	go func() { _ = env.Emit(t.Context(), b) }()
	m := <-msgs
	var got bus.Batch
	if err := new(bus.Decoder).DecodeMessage(m, &got); err != nil {
		t.Fatal(err)
	}
	m.Ack()
	r0, r1 := got.Records[0], got.Records[1]
	if r0.Source != "m" || r0.IngestTime == 0 || r0.SourceTime/1000 != r0.IngestTime/1000 || r1.SourceTime != 0 && r1.SourceTime/1000 != 0 || r1.Seq != r0.Seq+1 {
		t.Fatalf("stamping: %+v", got.Records)
	}
}
