package connectors

import (
	"context"
	"errors"
	"strings"

	"github.com/ferry-gateway/ferry/bus"
)

// Role is what a connector can do; a connector may have several.
type Role uint8

const (
	RoleSource Role = 1 << iota
	RoleSink
	RoleWriter
	RoleService // runs something in-process that others talk to (simulators, a broker)
)

func (r Role) String() string {
	var parts []string
	for _, x := range []struct {
		r Role
		n string
	}{{RoleSource, "source"}, {RoleSink, "sink"}, {RoleWriter, "writer"}, {RoleService, "service"}} {
		if r&x.r != 0 {
			parts = append(parts, x.n)
		}
	}
	return strings.Join(parts, "+")
}

// Connector is what every connector implements. See the package doc for the
// lifecycle.
type Connector interface {
	Validate() error
	Start(ctx context.Context, env *Env) error
	Stop(ctx context.Context) error
}

// Defaulter fills defaults before Validate.
type Defaulter interface {
	SetDefaults()
}

// Source produces batches. Outputs names the outputs it emits on (topics
// "<module>/<output>"), so routes can be resolved at load; most sources have
// just DefaultOutput.
type Source interface {
	Connector
	Outputs() []string
}

// DefaultOutput is the output a source emits on unless it says otherwise.
const DefaultOutput = "out"

// Sink consumes batches. Write returns nil once the batch is durably handed
// on (written, acknowledged by the far side); the runtime then acknowledges
// it on the bus. Any other error is retried with back-off, except errors
// wrapping ErrPoison, which are counted and skipped. A sink keeps nothing of
// b past Write (or, for a Pipeliner, past Send's wait): the runtime reuses
// the batch once it is acknowledged. Values it needs later (a last value,
// an alias table) it copies.
type Sink interface {
	Connector
	Write(ctx context.Context, b *bus.Batch) error
}

// Pipeliner is a sink that can have several batches in flight without
// reordering them: Send hands b to the far side in order and returns without
// waiting for the acknowledgement; the returned wait blocks until it came
// back (nil) or failed. Send must fail at once when the link is down rather
// than wait for it: the runtime then rewrites failed batches, in order,
// before sending anything newer. The runtime calls Send from one goroutine, in order,
// and waits in order, with up to the spool's window outstanding — so a
// backlog drains at link speed, not one round trip per batch.
type Pipeliner interface {
	Sink
	Send(ctx context.Context, b *bus.Batch) (wait func(context.Context) error, err error)
}

// Writer accepts write-back of one tag of a device it owns. The returned
// error says why the device refused it.
type Writer interface {
	Connector
	WriteTag(ctx context.Context, device, tag string, v bus.Value) error
}

var (
	// ErrPoison marks a batch that can never be delivered (the far side
	// rejected its content); retrying it would block everything behind it.
	ErrPoison = errors.New("poison batch")
	// ErrNotConnected is returned when the device or link is down.
	ErrNotConnected = errors.New("not connected")
	// ErrUnknownTag is returned by a Writer for a tag it does not own.
	ErrUnknownTag = errors.New("unknown tag")
	// ErrNotWritable is returned by a Writer for a read-only tag.
	ErrNotWritable = errors.New("tag is not writable")
)
