// Package compress compresses uplink payloads for metered links (gzip or
// zstd, klauspost/compress) and names the encoding the way HTTP's
// Content-Encoding does, so a consumer knows how to read a payload.
package compress

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Names are the accepted values of a compress option.
var Names = []string{"none", "gzip", "zstd"}

// Check returns a problem text for an unknown name, or "".
func Check(name string) string {
	if name == "" || slices.Contains(Names, name) {
		return ""
	}
	return fmt.Sprintf("%q is not one of %s", name, strings.Join(Names, ", "))
}

// Compressor compresses whole payloads; it is safe for concurrent use.
// A nil *Compressor leaves payloads as they are.
type Compressor struct {
	name string
	mu   sync.Mutex
	gz   *gzip.Writer // reused: a new one costs hundreds of KB
	zs   *zstd.Encoder
}

// New returns a Compressor for name, or nil for "" and "none".
func New(name string) (*Compressor, error) {
	switch name {
	case "", "none":
		return nil, nil
	case "gzip":
		return &Compressor{name: name}, nil
	case "zstd":
		// One goroutine and a small window: payloads are a batch each, and
		// an edge box has few cores to spare.
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20),
			zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return &Compressor{name: name, zs: enc}, nil
	}
	return nil, fmt.Errorf("compress: %s", Check(name))
}

// Encoding is the Content-Encoding name ("gzip", "zstd"), "" for none.
func (c *Compressor) Encoding() string {
	if c == nil {
		return ""
	}
	return c.name
}

// Append appends src, compressed, to dst.
func (c *Compressor) Append(dst, src []byte) []byte {
	if c == nil {
		return append(dst, src...)
	}
	if c.zs != nil {
		return c.zs.EncodeAll(src, dst)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.NewBuffer(dst)
	if c.gz == nil {
		c.gz = gzip.NewWriter(b)
	} else {
		c.gz.Reset(b)
	}
	_, _ = c.gz.Write(src)
	_ = c.gz.Close()
	return b.Bytes()
}

// Decode undoes Append for an encoding name; "" and "identity" return b.
// Consumers and tests use it.
func Decode(encoding string, b []byte) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "", "identity", "none":
		return b, nil
	case "gzip":
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return io.ReadAll(r)
	case "zstd":
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.DecodeAll(b, nil)
	}
	return nil, fmt.Errorf("unknown content encoding %q", encoding)
}
