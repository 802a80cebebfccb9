// Package spool is ferry's store-and-forward queue: a durable on-disk queue
// in front of a sink that crosses an intermittent link. A Spool is itself a
// watermill Publisher and Subscriber, so it stands anywhere on the bus, and
// it passes watermill's Pub/Sub conformance suite.
//
// # Contract
//
//   - At-least-once. A message leaves the spool only when the subscriber
//     Acks it. A Nack, or a subscription that ends with the message
//     unacknowledged, delivers it again before later messages of its lane.
//     Acks may come out of order (Config.Window > 1); release is in order.
//     Acknowledgements are made durable in the lane's head file at most
//     every second, so after a crash up to a second of acknowledged messages
//     comes again (downstream de-duplicates on source and seq).
//   - Lanes. Each topic has one lane per ferry-priority metadata value
//     (outlet.MetaPriority, set by the router); a subscriber drains the highest lane first and
//     each lane in order.
//   - Bounded. Config.Quota bounds the bytes of entries waiting, over all
//     lanes. When full, drop-oldest drops whole entries from the head of the
//     lowest-priority lane (entries in flight are not dropped), block makes
//     Publish wait for room. An entry expires at its ferry-ttl (from its
//     append time) or at Config.MaxAge; expired entries are never delivered.
//     Every dropped or expired record is counted in
//     ferry_spool_dropped_total{sink,reason} (quota, ttl, corrupt) and
//     logged once per burst.
//   - Durable, by fsync policy. Publish returns once its entries are handed
//     to the operating system (a crash of the process loses nothing it
//     returned for) and, under:
//     "always", once they are on stable storage: concurrent publishers share
//     one fsync per round of the writer (group commit), so records per fsync
//     grow with load; nothing accepted is lost on power loss;
//     "interval" (default, every 100ms), a power loss or kernel crash loses at
//     most the entries appended in the last interval plus one fsync's
//     duration; readers may see entries before they are fsynced;
//     "never", the operating system writes back when it likes (on Linux
//     typically within 30s), which is the window power loss may cost.
//   - Encrypted at rest on request: AES-256-GCM per entry with a random
//     nonce, the key from Config.KeyFile. spool.meta holds a key check value
//     (an HMAC of a fixed label) so that a wrong key fails at Open.
//     Headers (seq, times, record count) stay in clear: Inspect needs no key.
//
// # Why own segments rather than a WAL library
//
// The issue allowed a well-kept WAL library such as tidwall/wal. It is not
// among the modules this project can fetch, and the spool needs what such
// logs do not give: group commit across many concurrent writers with a
// choice of fsync policy per spool (tidwall/wal syncs per write or not at
// all); deletion from the head driven by out-of-order acknowledgements of
// several lanes; several independent lanes per directory; a per-segment
// summary (entries, records, bytes, times, expiry) so that Open reads only
// each segment's last 112 bytes and scans only each lane's last segment —
// tidwall/wal verifies every segment on open and keeps an in-memory index
// per entry, which the memory budget (a backlog of 10M records may not grow
// the heap) rules out; whole segments dropped for the quota or TTL from
// their summary without reading them; and damage inside a segment skipped
// entry by entry rather than failing the log. All of it is under 3,000
// lines with comments.
//
// # On disk
//
//	DIR/LOCK                      flock held by the process that has it open
//	DIR/spool.meta                {"format":1,"key_check":"…"}
//	DIR/lanes/<topic>/p<prio>/    one lane; <topic> escaped (bytes outside
//	                              [A-Za-z0-9_-] as %XX)
//	    00000000000000000001.seg  segments, named by the seq of their first entry
//	    head                      checkpoint: where the first entry not yet
//	                              done is (seq, segment, offset, counts before it)
//
// A segment is a 16-byte file header ("FSPLSEG1", base seq) followed by
// entries, and when sealed a seal entry whose body is the segment's summary
// (entries, records, bytes, first/last seq, first/last time, latest expiry).
// An entry is a 48-byte header — CRC-32C of the header, CRC-32C of the
// body, body length, kind, flags, seq, append time, expiry, record count —
// and a body: UUID, metadata and payload, each length-prefixed but the
// payload (see format.go). A segment is sealed when the next entry would
// not fit in Config.SegmentSize and deleted once every entry in it is done.
//
// # Recovery
//
// Open reads each sealed segment's seal and scans each lane's last segment.
// A torn tail (a partial or corrupt last entry with nothing intact after it)
// is cut off the file; damage followed by intact entries (found again by
// their header CRC and seq) is skipped. Either is logged, counted as corrupt
// and returned by Spool.Recovered. Damage met later while reading (a sealed
// segment is trusted on its seal) is skipped the same way.
//
// A lane's segments must meet: one's last seq + 1 is the next one's base.
// Where they do not (a segment deleted, zeroed or cut short), the entries
// between are lost, counted exactly from those bounds and logged with
// their seqs; their records are known only from a readable seal, else
// counted one per entry. A segment whose header never made it to disk (a
// full disk) is removed; an unreadable head file or spool.meta loses
// nothing and is written again (spool.meta from the segments, so that a
// missing or wrong key still fails at Open). Verify reads a whole spool
// without changing it and reports all of this.
//
// # Write failures
//
// A failed write (a full disk) fails the Publish calls of its round and
// nothing else: what the round wrote is written over by the next one.
// Failures are counted in ferry_spool_write_errors_total{sink} and shown
// in Stats; the log says once when writes start failing and once when they
// work again. Reads, decryption and segment deletion happen outside the
// store lock, so a slow disk under a drain does not hold up Publish.
//
// # Sharing a directory
//
// Opening a directory that is already open in this process returns another
// handle on the same store (the configuration must be the same); another
// process is kept out by the lock. Close ends the handle's subscriptions
// and, with the last handle, flushes and closes the store.
package spool
