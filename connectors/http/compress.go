package http

import (
	"sync"

	"github.com/ferry-gateway/ferry/connectors/compress"
)

// compressor compresses request bodies for compress: gzip | zstd. It is
// apart from encode's own gzip (the older gzip: true), which compresses
// while encoding.
type compressor struct {
	once sync.Once
	c    *compress.Compressor
}

// checkCompress validates compress, and that it does not contradict gzip.
func (c *Config) checkCompress(add func(path, format string, args ...any)) {
	if s := compress.Check(c.Compress); s != "" {
		add("compress", "%s", s)
		return
	}
	if c.Gzip && c.Compress != "" && c.Compress != "gzip" {
		add("compress", "%q contradicts gzip: true; drop gzip (compress: gzip is the same thing)", c.Compress)
	}
}

// compress returns body compressed as compress asks and the
// Content-Encoding to send, or body and "" when encode already did it (gzip)
// or nothing is asked.
func (h *HTTP) compress(body []byte) ([]byte, string) {
	if h.Gzip || h.Compress == "" || h.Compress == "none" {
		return body, ""
	}
	h.z.once.Do(func() {
		// Validate has checked the name, so New cannot fail here.
		h.z.c, _ = compress.New(h.Compress)
	})
	if h.z.c == nil {
		return body, ""
	}
	return h.z.c.Append(make([]byte, 0, len(body)/3+64), body), h.z.c.Encoding()
}
