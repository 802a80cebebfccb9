// Package opcua is an OPC UA server simulator for tests, benchmarks, the
// demo and `ferry sim opcua`, built on gopcua's server package
// (github.com/gopcua/opcua v0.9.0). It is a library first: Start returns a
// running server on a loopback port, and tests change values and inject
// faults while a real client talks to it over TCP.
//
//	s, err := opcua.Start(ctx, opcua.Config{Tags: 1000, Interval: 100 * time.Millisecond})
//	defer s.Close()
//	s.Endpoint()                         // opc.tcp://127.0.0.1:<port>
//	s.NodeIDURI(s.Tag(0))                // nsu=urn:ferry:sim:plant;s=Plant/Line01/V00001
//	s.SetValue(opcua.SetpointPath, 42.5) // notifies subscribers
//	s.Tick()                             // every line variable to the next generation
//	s.Restart(ctx)                       // same port, sessions and subscriptions gone
//
// # Address space
//
// Namespace Config.NamespaceURI (default urn:ferry:sim:plant) holds a
// Plant folder, organised under the Objects folder:
//
//	Plant/Setpoint         Double, readable and writable
//	Plant/Limit            Double, read-only (a write gets BadNotWritable)
//	Plant/Types/...        ByteString, LocalizedText, NodeId, StatusCode,
//	                       DoubleArray (Double[]), Range (an ExtensionObject)
//	Plant/LineNN/V00001…   Config.Tags variables, Config.PerLine per folder,
//	                       of the types KindOf(i) cycles through
//	Plant/Boiler           an event source; Plant/Boiler/HighTemp an alarm
//	                       condition (FireEvent, SetAlarm, Alarm)
//	Plant/Mixer/Mix        a method (Ratio Double, Seconds UInt16)
//	EngineeringUnits       "°C" on Setpoint and Limit (events.go says more)
//
// NodeIds are string ids equal to the path: ns=<index>;s=Plant/Line01/V00001.
// Line variable i holds Value(i, gen) where gen counts Ticks, so a test
// knows every value it should receive. Every value carries source and
// server timestamps (the time it was set) and, after SetStatus, a status.
//
// # Faults
//
//   - Restart: stop and start on the same address, as a server process
//     restart; SetExtraNamespaces first to move the Plant namespace to
//     another index.
//   - DropSessions: the server forgets its sessions (BadSessionIdInvalid).
//   - DropConnections: every TCP connection closes; the server stays, and
//     so do sessions and subscriptions (messages sent meanwhile are kept
//     for Republish) until a new session takes them over with
//     TransferSubscriptions or their lifetime runs out.
//   - StallPublish: Publish requests are swallowed while the connection
//     stays open — a hung subscription engine.
//   - HoldPublish / ReleasePublish: publish responses are kept back while
//     the subscriptions go on numbering them, then sent at once, newest
//     first if asked — several queued responses, out of order.
//   - LosePublish: the next data NotificationMessages are numbered and
//     kept for Republish but never sent.
//   - Config.NoRepublish (Republish answers BadServiceUnsupported, as
//     gopcua's server does) and Config.RetransmitQueue < 0 (nothing kept:
//     BadMessageNotAvailable).
//   - MalformNext: the next message the server sends is garbled.
//   - SetStatus: one variable reports a Bad (or Uncertain) status.
//   - RemoveNode / AddNode: a variable vanishes from (or comes back to)
//     Browse, Read and monitored-item creation at runtime.
//
// Stats counts sessions (created, closed, open at once), publish requests
// and connections, so tests can assert that a client never holds two
// sessions.
//
// # Security
//
// Endpoints: None; Basic256Sha256 Sign and SignAndEncrypt;
// Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss SignAndEncrypt, with a
// self-signed certificate (application URI urn:ferry:sim:opcua) generated
// once per process unless Config.Certificate is given. Config.Users enables
// user name tokens (the simulator decrypts and checks the password, which
// gopcua's server does not), DenyAnonymous refuses anonymous sessions,
// UserCertificates accepts X.509 user tokens by certificate (the token
// signature is not verified).
//
// # What differs from gopcua's server, and why
//
// gopcua's server package is used for the protocol (secure channels,
// sessions, subscriptions, publish), but:
//
//   - The address space is the simulator's own NameSpace implementation:
//     its shape is fixed and values are atomic pointers, so reads and
//     monitored-item creation never race with value changes. gopcua's
//     MapNamespace and NodeNameSpace read their maps and values unlocked.
//   - Notifications are dispatched by the simulator: gopcua's
//     ChangeNotification sends to subscription channels while holding its
//     monitored-item lock, which deadlocks once a subscription goroutine
//     has exited. Changes made before a client connects, or while the
//     server restarts, are kept and not notified (gopcua panics on a
//     notification before Start).
//   - Subscriptions run on the simulator's own loop (publish.go), not
//     gopcua's, which sends each response straight to the channel, keeps
//     no sent messages and answers Republish "unsupported". It keeps the
//     last Config.RetransmitQueue unacknowledged NotificationMessages per
//     subscription, answers Republish from them, lists them in
//     AvailableSequenceNumbers, fills in acknowledgement results, numbers
//     keep-alives with the next sequence number (wrapping past 0), and
//     ends a subscription without Publish requests for its lifetime.
//     gopcua's Subscription value is still registered, because its
//     monitored item service files items under it.
//   - Service handlers are wrapped: user identity checks, session counting,
//     BadSessionIdInvalid for unknown sessions (gopcua dereferences them),
//     BadNodeIdUnknown for monitored items on unknown nodes (gopcua accepts
//     any NodeId), unknown monitored item ids (gopcua panics), subscription
//     ids that are never reused (gopcua numbers them count+1), and a
//     recover around every handler.
//   - A TCP proxy owns the public address, because gopcua's server cannot
//     close client connections (its Close waits ten seconds for clients to
//     hang up, then leaves them open). GetEndpoints and CreateSession
//     answer with the public URL.
//
// Still as in gopcua (tests must not rely on these): sampling intervals,
// queue sizes, deadbands and data-change triggers are ignored (one
// notification per change, queue of one); all of a subscription's
// notifications go into one publish response; ModifySubscription,
// SetPublishingMode, BrowseNext and
// TranslateBrowsePathsToNodeIds are unsupported; MaxNodesPerRead is stated
// as 32 but not enforced; sessions never time out.
package opcua
