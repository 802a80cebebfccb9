package spool

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
)

// On-disk format. All integers are little-endian. See the package doc for
// the picture; the constants here are the single source of the layout.
const (
	segMagic      = "FSPLSEG1" // first 8 bytes of every segment file
	fileHeaderLen = 16         // magic, then the segment's base seq (u64)

	headerLen = 48 // fixed entry header, see putHeader
	sealBody  = 64 // summary carried by a seal entry
	sealLen   = headerLen + sealBody

	kindMessage = 1
	kindSeal    = 2

	flagEncrypted = 1

	nonceLen = 12
	tagLen   = 16

	ckptMagic = "FSPLHEAD"
	ckptLen   = 8 + 7*8 + 4

	segExt   = ".seg"
	ckptName = "head"
	metaName = "spool.meta"
	lockName = "LOCK"
	lanesDir = "lanes"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// header is an entry's fixed header.
//
//	 0 u32 crc32c of bytes 4..48 of the header
//	 4 u32 crc32c of the body
//	 8 u32 body length
//	12 u8  kind (1 message, 2 seal)
//	13 u8  flags (bit 0: body encrypted)
//	14 u16 reserved, zero
//	16 u64 seq: position in the lane, consecutive from the lane's first
//	24 i64 append time, Unix ns
//	32 i64 expiry, Unix ns; 0 for none
//	40 u32 records the payload holds (1 for a payload that is not a batch)
//	44 u32 reserved, zero
type header struct {
	bodyCRC uint32
	bodyLen uint32
	kind    uint8
	flags   uint8
	seq     uint64
	time    int64
	expiry  int64
	records uint32
}

func (h *header) size() int64 { return headerLen + int64(h.bodyLen) }

// put writes h into b[:headerLen], header CRC included.
func (h *header) put(b []byte) {
	_ = b[headerLen-1]
	binary.LittleEndian.PutUint32(b[4:], h.bodyCRC)
	binary.LittleEndian.PutUint32(b[8:], h.bodyLen)
	b[12] = h.kind
	b[13] = h.flags
	b[14], b[15] = 0, 0
	binary.LittleEndian.PutUint64(b[16:], h.seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.time))
	binary.LittleEndian.PutUint64(b[32:], uint64(h.expiry))
	binary.LittleEndian.PutUint32(b[40:], h.records)
	binary.LittleEndian.PutUint32(b[44:], 0)
	binary.LittleEndian.PutUint32(b[0:], crc(b[4:headerLen]))
}

// setSeq stamps the seq into an encoded header and refreshes its CRC; the
// writer does it, because only it knows the order entries reach a lane.
func setSeq(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint32(b[0:], crc(b[4:headerLen]))
}

// parseHeader reads b[:headerLen] and reports whether its CRC holds and its
// kind is known.
func parseHeader(b []byte) (header, bool) {
	if len(b) < headerLen || binary.LittleEndian.Uint32(b) != crc(b[4:headerLen]) {
		return header{}, false
	}
	h := header{
		bodyCRC: binary.LittleEndian.Uint32(b[4:]),
		bodyLen: binary.LittleEndian.Uint32(b[8:]),
		kind:    b[12],
		flags:   b[13],
		seq:     binary.LittleEndian.Uint64(b[16:]),
		time:    int64(binary.LittleEndian.Uint64(b[24:])),
		expiry:  int64(binary.LittleEndian.Uint64(b[32:])),
		records: binary.LittleEndian.Uint32(b[40:]),
	}
	return h, h.kind == kindMessage || h.kind == kindSeal
}

// aad is what GCM authenticates besides the body: kind, flags, time, expiry
// and records. The seq is left out because the writer stamps it after the
// publisher sealed the body; the header CRC covers it.
func aad(dst, hdr []byte) []byte {
	dst = append(dst, hdr[12:16]...)
	return append(dst, hdr[24:48]...)
}

// summary describes a run of message entries: a sealed segment's, or the
// part of the active segment written so far.
type summary struct {
	entries   int64
	records   int64
	bytes     int64 // entry headers and bodies
	firstSeq  uint64
	lastSeq   uint64
	firstTime int64
	lastTime  int64
	maxExpiry int64 // latest expiry; 0 if an entry has none
	noExpiry  bool  // some entry has no expiry (not stored: maxExpiry 0 says it)
}

func (s *summary) add(h *header) {
	if s.entries == 0 {
		s.firstSeq, s.firstTime = h.seq, h.time
		s.maxExpiry = h.expiry
	}
	s.entries++
	s.records += int64(h.records)
	s.bytes += h.size()
	s.lastSeq, s.lastTime = h.seq, h.time
	if h.expiry == 0 {
		s.noExpiry = true
	}
	s.maxExpiry = max(s.maxExpiry, h.expiry)
}

// allExpireBy reports the time after which every entry summed is expired
// under the entry TTLs and maxAge (0 = none), or 0 if some never expires.
func (s *summary) allExpireBy(maxAge int64) int64 {
	byTTL := s.maxExpiry
	if s.noExpiry {
		byTTL = 0
	}
	byAge := int64(0)
	if maxAge > 0 {
		byAge = s.lastTime + maxAge
	}
	switch {
	case byTTL == 0:
		return byAge
	case byAge == 0:
		return byTTL
	}
	return min(byTTL, byAge)
}

func (s *summary) putSeal(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], uint64(s.entries))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.records))
	binary.LittleEndian.PutUint64(b[16:], uint64(s.bytes))
	binary.LittleEndian.PutUint64(b[24:], s.firstSeq)
	binary.LittleEndian.PutUint64(b[32:], s.lastSeq)
	binary.LittleEndian.PutUint64(b[40:], uint64(s.firstTime))
	binary.LittleEndian.PutUint64(b[48:], uint64(s.lastTime))
	me := s.maxExpiry
	if s.noExpiry {
		me = 0
	}
	binary.LittleEndian.PutUint64(b[56:], uint64(me))
}

func parseSeal(b []byte) summary {
	s := summary{
		entries:   int64(binary.LittleEndian.Uint64(b[0:])),
		records:   int64(binary.LittleEndian.Uint64(b[8:])),
		bytes:     int64(binary.LittleEndian.Uint64(b[16:])),
		firstSeq:  binary.LittleEndian.Uint64(b[24:]),
		lastSeq:   binary.LittleEndian.Uint64(b[32:]),
		firstTime: int64(binary.LittleEndian.Uint64(b[40:])),
		lastTime:  int64(binary.LittleEndian.Uint64(b[48:])),
		maxExpiry: int64(binary.LittleEndian.Uint64(b[56:])),
	}
	s.noExpiry = s.maxExpiry == 0 && s.entries > 0
	return s
}

// sealEntry encodes the seal that closes a segment.
func sealEntry(s *summary, now int64) []byte {
	b := make([]byte, sealLen)
	s.putSeal(b[headerLen:])
	h := header{bodyCRC: crc(b[headerLen:]), bodyLen: sealBody, kind: kindSeal, seq: s.lastSeq, time: now}
	h.put(b)
	return b
}

func segHeader(base uint64) []byte {
	b := make([]byte, fileHeaderLen)
	copy(b, segMagic)
	binary.LittleEndian.PutUint64(b[8:], base)
	return b
}

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segExt) }

func parseSegName(name string) (uint64, bool) {
	if len(name) != 20+len(segExt) || !strings.HasSuffix(name, segExt) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:20], 10, 64)
	return v, err == nil
}

// counts is how much of a segment lies before a position, or is done.
type counts struct {
	entries, records, bytes int64
}

func (c *counts) add(h *header) {
	c.entries++
	c.records += int64(h.records)
	c.bytes += h.size()
}

// checkpoint is a lane's head file: where its first entry not yet done is.
// Entries acknowledged out of order past it are delivered again after a
// restart (at-least-once).
//
//	 0 "FSPLHEAD"
//	 8 u64 seq of the first entry not done
//	16 u64 base of the segment it is in
//	24 u64 its offset in that segment
//	32 u64 entries, 40 records, 48 bytes before it in that segment
//	56 u64 reserved
//	64 u32 crc32c of bytes 0..64
type checkpoint struct {
	seq    uint64
	base   uint64
	off    int64
	before counts
}

func (c *checkpoint) encode() []byte {
	b := make([]byte, ckptLen)
	copy(b, ckptMagic)
	binary.LittleEndian.PutUint64(b[8:], c.seq)
	binary.LittleEndian.PutUint64(b[16:], c.base)
	binary.LittleEndian.PutUint64(b[24:], uint64(c.off))
	binary.LittleEndian.PutUint64(b[32:], uint64(c.before.entries))
	binary.LittleEndian.PutUint64(b[40:], uint64(c.before.records))
	binary.LittleEndian.PutUint64(b[48:], uint64(c.before.bytes))
	binary.LittleEndian.PutUint32(b[64:], crc(b[:64]))
	return b
}

func decodeCheckpoint(b []byte) (checkpoint, bool) {
	if len(b) != ckptLen || string(b[:8]) != ckptMagic || binary.LittleEndian.Uint32(b[64:]) != crc(b[:64]) {
		return checkpoint{}, false
	}
	return checkpoint{
		seq:  binary.LittleEndian.Uint64(b[8:]),
		base: binary.LittleEndian.Uint64(b[16:]),
		off:  int64(binary.LittleEndian.Uint64(b[24:])),
		before: counts{
			entries: int64(binary.LittleEndian.Uint64(b[32:])),
			records: int64(binary.LittleEndian.Uint64(b[40:])),
			bytes:   int64(binary.LittleEndian.Uint64(b[48:])),
		},
	}, true
}

// A message body in clear is
//
//	uvarint len, UUID
//	uvarint number of metadata pairs, then each key and value as uvarint len + bytes
//	payload (the rest)
//
// Encrypted, the body is a 12-byte random nonce followed by AES-256-GCM of
// the clear body, with aad() as additional data.

func clearBodyLen(m *message.Message) int {
	n := binary.MaxVarintLen32*2 + len(m.UUID) + len(m.Payload)
	for k, v := range m.Metadata {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	return n
}

func appendClearBody(dst []byte, m *message.Message) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m.UUID)))
	dst = append(dst, m.UUID...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Metadata)))
	for k, v := range m.Metadata {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return append(dst, m.Payload...)
}

var errBody = errors.New("malformed message body")

// decodeBody parses a clear body. The payload is copied: b is a read buffer.
func decodeBody(b []byte) (uuid string, md message.Metadata, payload []byte, err error) {
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if uuid, ok = str(); !ok {
		return "", nil, nil, errBody
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return "", nil, nil, errBody
	}
	b = b[k:]
	md = make(message.Metadata, n)
	for range n {
		key, ok1 := str()
		val, ok2 := str()
		if !ok1 || !ok2 {
			return "", nil, nil, errBody
		}
		md[key] = val
	}
	payload = append([]byte(nil), b...)
	return uuid, md, payload, nil
}

// sealer encrypts and decrypts bodies; nil means no encryption.
type sealer struct {
	gcm cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &sealer{gcm: g}, nil
}

func (s *sealer) seal(dst, clear, ad []byte) []byte {
	nonce := dst[len(dst) : len(dst)+nonceLen]
	_, _ = rand.Read(nonce) // never fails (crypto/rand panics rather than return an error)
	dst = dst[:len(dst)+nonceLen]
	return s.gcm.Seal(dst, nonce, clear, ad)
}

func (s *sealer) open(body, ad []byte) ([]byte, error) {
	if len(body) < nonceLen+tagLen {
		return nil, errBody
	}
	return s.gcm.Open(nil, body[:nonceLen], body[nonceLen:], ad)
}

// keyCheck is what spool.meta stores to tell a wrong key at Open: an HMAC of
// a fixed label, which says nothing about the key itself.
func keyCheck(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ferry spool key check v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// escapeTopic turns a topic into one path element: letters, digits, '-'
// and '_' stay, every other byte becomes %XX.
func escapeTopic(t string) string {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}

func unescapeTopic(s string) (string, bool) {
	if s == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

func laneDirName(prio int) string { return "p" + strconv.Itoa(prio) }

func parseLaneDir(s string) (int, bool) {
	if !strings.HasPrefix(s, "p") {
		return 0, false
	}
	v, err := strconv.Atoi(s[1:])
	return v, err == nil
}
