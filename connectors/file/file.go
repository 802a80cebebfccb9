// Package file is a sink that writes records as JSON lines to a file, with
// rotation by size, or to standard output.
package file

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "file",
		Roles:   connectors.RoleSink,
		New:     func() connectors.Connector { return &File{} },
		Sample:  sample,
		Summary: "JSON lines to a file (rotated by size) or to stdout",
		Local:   true, // no link: no ferry_link_up
	})
}

// Config is the file sink's section of ferry.yaml.
type Config struct {
	Path     string    `yaml:"path"`
	Format   string    `yaml:"format"`
	MaxSize  conf.Size `yaml:"max_size"`
	MaxFiles int       `yaml:"max_files"`
	// JSONOutput: fields and time_format.
	bus.JSONOutput `yaml:",inline"`
}

// Formats are the output formats. A file's unit is a line: json-lines
// writes a line per record, json-array a line per batch (an array), and
// json, one object per line, writes what json-lines does; it stays for the
// configs written before json-lines had its name.
var Formats = []string{"json-lines", "json-array", "json"}

// File is the sink.
type File struct {
	Config `yaml:",inline"`

	// Stdout replaces os.Stdout for path "-" (tests).
	Stdout io.Writer `yaml:"-"`

	mu   sync.Mutex
	path string // Path resolved against the data dir
	w    io.Writer
	f    *os.File
	size int64
	buf  []byte
	enc  *bus.JSONEncoder
}

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = "json-lines"
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = 5
	}
}

// Validate checks the config without touching the disk.
func (c *Config) Validate() error {
	var p conf.Problems
	if c.Path == "" {
		p.Add("path", `missing path; give a file path or "-" for standard output`)
	}
	if !slices.Contains(Formats, c.Format) {
		p.Add("format", "%q is not one of %s", c.Format, strings.Join(Formats, ", "))
	}
	c.JSONOutput.Check(true, c.Format, p.Add)
	if c.MaxSize != 0 && c.MaxSize < 4096 {
		p.Add("max_size", "%s is too small to hold a batch; use 0 (no rotation) or at least 4KiB", c.MaxSize)
	}
	if c.MaxFiles < 1 {
		p.Add("max_files", "must be at least 1, got %d", c.MaxFiles)
	}
	return p.Err()
}

// Start opens the file (creating its directory).
func (s *File) Start(_ context.Context, env *connectors.Env) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.path = env.Path(s.Path)
	s.enc = s.JSONOutput.Encoder()
	if s.Path == "-" {
		s.w = s.Stdout
		if s.w == nil {
			s.w = os.Stdout
		}
		return nil
	}
	return s.open()
}

func (s *File) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("file %s: %w", s.path, err)
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("file %s: %w", s.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("file %s: %w", s.Path, err)
	}
	s.f, s.w, s.size = f, f, st.Size()
	return nil
}

// Write appends the batch in one write (JSON lines, or one array on a line
// of its own), rotating first when the file would pass max_size.
func (s *File) Write(_ context.Context, b *bus.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return fmt.Errorf("file %s: %w", s.Path, connectors.ErrNotConnected)
	}
	if s.Format == "json-array" {
		s.buf = append(s.enc.AppendArray(s.buf[:0], b.Records), '\n')
	} else {
		s.buf = s.enc.AppendLines(s.buf[:0], b.Records)
	}
	if s.f != nil && s.MaxSize > 0 && s.size > 0 && s.size+int64(len(s.buf)) > int64(s.MaxSize) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.w.Write(s.buf)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("file %s: write: %w", s.Path, err)
	}
	return nil
}

// rotate shifts path.N-1 → path.N … path → path.1 and opens a new path.
func (s *File) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("file %s: close for rotation: %w", s.Path, err)
	}
	s.f, s.w = nil, nil
	for i := s.MaxFiles - 1; i >= 1; i-- {
		from := s.path + "." + strconv.Itoa(i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, s.path+"."+strconv.Itoa(i+1)); err != nil {
				return fmt.Errorf("file %s: rotate: %w", s.Path, err)
			}
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return fmt.Errorf("file %s: rotate: %w", s.Path, err)
	}
	return s.open()
}

// Stop closes the file. Safe after a failed Start.
func (s *File) Stop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = nil
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("file %s: close: %w", s.Path, err)
	}
	return nil
}

var _ connectors.Sink = (*File)(nil)
