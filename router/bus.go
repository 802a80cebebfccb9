package router

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/bus/natsbus"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// BusConfig is the bus: section. With type memory the bus is in-process;
// with type nats it is a NATS JetStream cluster several instances share, and
// the rest of the section is natsbus.Config.
type BusConfig struct {
	Type           string `yaml:"type"`
	natsbus.Config `yaml:",inline"`
}

// Bus types.
const (
	BusMemory = "memory"
	BusNATS   = "nats"
)

// BusTypes lists the values bus.type accepts.
var BusTypes = []string{BusMemory, BusNATS}

// NATS reports whether the bus is NATS.
func (b *BusConfig) NATS() bool { return b.Type == BusNATS }

// load defaults and validates the bus section at n.
func (b *BusConfig) load(src *conf.Source, root *yaml.Node) conf.Errors {
	n := conf.MapValue(root, "bus")
	if b.Type == "" {
		b.Type = BusMemory
	}
	switch b.Type {
	case BusMemory:
		// Settings of the NATS bus on a memory bus are a mistake worth
		// naming: the integrator meant to share the bus and does not.
		var errs conf.Errors
		if n != nil && n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; k.Value != "type" {
					errs = append(errs, src.At(k, "bus."+k.Value, "only for the nats bus; add type: nats"))
				}
			}
		}
		return errs
	case BusNATS:
		b.Config.SetDefaults()
		if n == nil {
			n = root
		}
		return src.Positioned(n, "bus", b.Config.Validate())
	}
	return conf.Errors{src.At(conf.Locate(root, "bus.type"), "bus.type", "%q is not one of %s", b.Type, strings.Join(BusTypes, ", "))}
}
