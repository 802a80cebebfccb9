package connectors

import (
	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// ReservedKeys are the keys of a connector's section that ferry reads itself:
// the connector type, the spool or the memory buffer in front of a sink,
// and whether a source is active/standby on a NATS bus.
var ReservedKeys = map[string]bool{"type": true, "store_and_forward": true, "buffer": true, "active_standby": true}

// Decode decodes one connector section (with its type: key) into
// cn, applies its defaults and validates it. Tests of sample configs use it
// too, so a sample is checked exactly as a user's file is.
func Decode(src *conf.Source, body *yaml.Node, cn Connector, path string) conf.Errors {
	// These keys belong to ferry, not to the connector's struct.
	rest := *body
	rest.Content = nil
	for i := 0; i+1 < len(body.Content); i += 2 {
		if !ReservedKeys[body.Content[i].Value] {
			rest.Content = append(rest.Content, body.Content[i], body.Content[i+1])
		}
	}
	errs := src.Decode(&rest, cn, path)
	if len(errs) > 0 {
		return errs
	}
	if d, ok := cn.(Defaulter); ok {
		d.SetDefaults()
	}
	return src.Positioned(&rest, path, cn.Validate())
}
