// Package examples holds configs that run as they are. The demo is embedded
// so that `ferry run` with no config has something to run.
package examples

import _ "embed"

// Demo is the config `ferry run` uses when given none.
//
//go:embed demo.yaml
var Demo []byte
