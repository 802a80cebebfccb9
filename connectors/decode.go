package connectors

import (
	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Decode decodes one connector section (with its type: key) into
// cn, applies its defaults and validates it. Tests of sample configs use it
// too, so a sample is checked exactly as a user's file is.
func Decode(src *conf.Source, body *yaml.Node, cn Connector, path string) conf.Errors {
	// The type key belongs to ferry, not to the connector's struct.
	rest := *body
	rest.Content = nil
	for i := 0; i+1 < len(body.Content); i += 2 {
		if body.Content[i].Value != "type" {
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
