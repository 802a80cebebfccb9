// Package lease runs a source connector on exactly one of several ferry
// instances at a time (active/standby), through a lease in a NATS JetStream
// key-value bucket, and hands out record sequence numbers that never repeat
// across the instances that take turns owning the source.
//
// # Protocol
//
// Every instance configured with a source runs Elector.Run for its key.
//
//   - Campaign. Each heartbeat an instance that does not own the key tries
//     kv.Create(key, instance). Create succeeds only when the key is absent:
//     never written, deleted by an owner that stopped, or expired. The lease
//     bucket has TTL = Lease, so JetStream removes the key Lease after its
//     last write; that is what frees the lease of an owner that died or lost
//     the bus. A standby also reads the key to know who owns it (Status).
//   - Term. The instance whose Create succeeded owns the key for a term. It
//     first reserves a block of sequence numbers (below), then calls work
//     with a context that ends with the term. Every heartbeat it renews with
//     kv.Update(key, instance, lastRevision).
//   - Refused renewal. An Update refused because the revision moved means
//     another instance owns the key: the term ends at once.
//   - Self-fencing. A renewal that cannot reach the server is retried each
//     heartbeat. When none has succeeded for Lease - Heartbeat, counted from
//     the moment the last successful one was sent, the term ends. The server
//     stamps that write no earlier than it was sent and keeps the key Lease
//     after the stamp, so the owner stops at least one Heartbeat before any
//     standby can Create the key: the heartbeat is the time work has to
//     return once its context ends.
//   - Graceful stop. When Run's context ends, the term's context is
//     cancelled, the lease is still renewed until work has returned, and
//     then the key is deleted (only at the revision this owner last wrote),
//     so that a standby takes over within one heartbeat instead of waiting
//     for the TTL. A term ended by the work function returning on its own
//     releases the key the same way.
//
// # Sequence numbers and fencing
//
// Term.Reserve hands out numbers from blocks recorded in a second bucket
// (no TTL) under the same key. Reserving a block is a compare-and-set on
// that key: its value is the end of the last block reserved, so a new owner
// starts where the previous one's reservation ended, and the gap at a
// failover is at most the unused part of one block. Blocks are sized to
// about two heartbeats of the source's recent rate (64 to 1<<20 numbers), so
// a busy source writes the bucket about once a heartbeat and an idle one
// leaves a small gap. The very first block of a key starts at the current
// Unix time in microseconds, above anything a run without leases numbered.
//
// A new owner reserves its first block before its work starts. That moves
// the revision of the sequence key, so any later reservation by an earlier
// term fails its compare-and-set: Reserve returns an error wrapping
// ErrFenced and ends that term. This is the fence that holds even when the
// self-fencing assumption below does not: whatever the clocks do, two terms
// never hand out the same number. An old term may still hand out what is
// left of a block it had already reserved; those numbers are its own.
//
// # Limits
//
//   - Exclusivity (never two owners at once) rests on the owner's clock and
//     the server's running at the same rate within Heartbeat per Lease, on
//     work returning within a heartbeat of its context ending, and on the
//     process not being paused (GC, VM freeze) for longer than a heartbeat
//     between checks. Uniqueness of sequence numbers rests on none of these.
//   - Takeover after a crash takes up to Lease plus one heartbeat; after a
//     graceful stop, about one heartbeat.
//   - Instance names must be unique among running instances: an owner that
//     finds its own name at a revision it did not see written takes it for
//     a write of its own whose reply was lost.
//   - The buckets' settings (TTL = Lease, replicas) are written by every
//     instance that starts; instances sharing a bus must agree on Lease.
//   - A client that buffers publishes while reconnecting (nats.go's default
//     ReconnectBufSize) may deliver a renewal after the owner has fenced
//     itself; it is a compare-and-set, so it cannot take the key from a new
//     owner, but it can keep a released key alive for one more Lease. Set
//     nats.ReconnectBufSize(-1) on the connection.
package lease
