module github.com/ferry-gateway/ferry

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1 // indirect
	github.com/expr-lang/expr v1.17.8 // indirect
	github.com/goburrow/modbus v0.1.0 // indirect
	github.com/goburrow/serial v0.1.0 // indirect
	github.com/gobwas/glob v1.1.0 // indirect
	github.com/golang/snappy v0.0.4 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gopcua/opcua v0.9.0 // indirect
	github.com/gorilla/websocket v1.5.0 // indirect
	github.com/linkedin/goavro/v2 v2.15.0 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/mochi-mqtt/server/v2 v2.7.9 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/rs/xid v1.4.0 // indirect
	github.com/simonvetter/modbus v1.6.4 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
