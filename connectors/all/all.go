// Package all registers every connector that ships with ferry.
package all

import (
	_ "github.com/ferry-gateway/ferry/connectors/file"
	_ "github.com/ferry-gateway/ferry/connectors/generator"
	_ "github.com/ferry-gateway/ferry/connectors/http"
	_ "github.com/ferry-gateway/ferry/connectors/kafka"
	_ "github.com/ferry-gateway/ferry/connectors/line"
	_ "github.com/ferry-gateway/ferry/connectors/localbroker"
	_ "github.com/ferry-gateway/ferry/connectors/modbus"
	_ "github.com/ferry-gateway/ferry/connectors/mqtt"
	_ "github.com/ferry-gateway/ferry/connectors/opcua"
	_ "github.com/ferry-gateway/ferry/connectors/simulator"
	_ "github.com/ferry-gateway/ferry/connectors/sparkplug"
)
