// Package connectors is the contract between ferry and the things it talks
// to: the Connector interfaces, the registry connectors add themselves to,
// and the Env through which a running connector emits batches, reports its
// state and gets supervised goroutines.
//
// # Lifecycle
//
// Every connector goes through the same steps, in this order:
//
//  1. Decode: the loader creates a zero value with Info.New and decodes the
//     connector's YAML section into it, strictly (unknown keys are errors).
//  2. SetDefaults (optional, Defaulter): fills what the file left out. Defaults
//     live there and nowhere else.
//  3. Validate: pure and fast, no I/O; returns every problem at once as
//     conf.FieldError values whose paths the loader turns into file:line:col.
//  4. Start(ctx, env): brings the connector up. It returns quickly: a device
//     that is down is not a failed start, it is a connector in state "down"
//     that keeps retrying (Env.Go runs such loops). An error from Start means
//     the connector cannot run at all (a port that cannot be bound); the rest
//     of the pipeline runs on without it.
//  5. Stop(ctx): releases what Start took. It must be safe after a Start that
//     failed half-way and must return by ctx's deadline. After Stop returns,
//     the runtime cancels the Env's context and waits for its goroutines.
//
// A connector's failure never stops the others or the process: goroutines
// started with Env.Go recover panics, mark the connector down, and restart
// with back-off.
//
// # Roles
//
// A Source emits batches with Env.Emit; the Env stamps the source module,
// the ingest time and the per-source sequence number, so every source gets
// them right the same way. A Sink is handed batches by the runtime through
// Write and acknowledges them by returning nil. A Writer accepts write-back
// of single tags.
package connectors
