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
	if d, ok := cn.(Defaulter); ok {
		d.SetDefaults()
	}
	// Validate runs even when decoding found problems, so that one run of
	// `ferry validate` lists them all: an unknown key must not hide a bad
	// byte order two lines below it. A value that failed to decode is left
	// at its zero value, and whatever Validate says about that same spot
	// repeats (less well) what decoding said already: it is dropped.
	seen := map[[2]int]bool{}
	for _, e := range errs {
		seen[[2]int{e.Line, e.Col}] = true
	}
	for _, e := range src.Positioned(&rest, path, cn.Validate()) {
		if !seen[[2]int{e.Line, e.Col}] {
			errs = append(errs, e)
		}
	}
	errs.Sort()
	return errs
}
