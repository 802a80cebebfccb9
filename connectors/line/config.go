package line

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the line source's section of ferry.yaml. Exactly one of Listen,
// Connect, Serial and File says where the lines come from.
type Config struct {
	Listen  string  `yaml:"listen"`  // TCP listener: host:port, many clients at once
	Connect string  `yaml:"connect"` // TCP client: host:port, reconnected with back-off
	Serial  *Serial `yaml:"serial"`  // serial port
	File    string  `yaml:"file"`    // tailed file; relative paths resolve in the data dir

	Parse parse.Config `yaml:"parse"`
	// Device is the device of records whose line and parse mapping name none.
	Device string `yaml:"device"`
	// MaxLine is the longest line accepted; a longer one is counted as a
	// parse error and skipped up to its newline.
	MaxLine conf.Size `yaml:"max_line"`
	// BatchSize and BatchInterval bound how the records of many lines are
	// gathered into one bus batch.
	BatchSize     int           `yaml:"batch_size"`
	BatchInterval conf.Duration `yaml:"batch_interval"`

	// MaxClients caps the clients of a listener; more are refused, unless
	// one of those connected has been silent for EvictIdle.
	MaxClients int `yaml:"max_clients"`
	// IdleTimeout closes a listener's client that sends nothing for this
	// long.
	IdleTimeout conf.Duration `yaml:"idle_timeout"`
	// EvictIdle: with max_clients connected, a newcomer takes the place of
	// the client silent the longest, if silent for at least this long.
	EvictIdle conf.Duration `yaml:"evict_idle"`
	// DialTimeout bounds one connection attempt of the TCP client.
	DialTimeout conf.Duration `yaml:"dial_timeout"`
	// MaxBackoff caps the wait between reconnection attempts (client, serial).
	MaxBackoff conf.Duration `yaml:"max_backoff"`

	// PollInterval is how often an idle tailed file is checked for growth,
	// truncation and rotation.
	PollInterval conf.Duration `yaml:"poll_interval"`
	// RotateWait is how long a rotated file is still read after its name
	// points elsewhere, for a writer that has not reopened yet.
	RotateWait conf.Duration `yaml:"rotate_wait"`
	// StartAt is where a file is read from when no offset is stored:
	// "end" (only lines appended from now on) or "beginning".
	StartAt string `yaml:"start_at"`
}

// Serial is a serial port's settings.
type Serial struct {
	Device   string `yaml:"device"`
	Baud     int    `yaml:"baud"`
	DataBits int    `yaml:"data_bits"`
	Parity   string `yaml:"parity"` // N, E or O
	StopBits int    `yaml:"stop_bits"`
}

// Accepted values, for validation messages.
var (
	StartAts = []string{"end", "beginning"}
	Parities = []string{"N", "E", "O"}
	// Bauds are the rates the serial driver can set.
	Bauds = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
		57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000,
		2500000, 3000000, 3500000, 4000000}
)

const (
	// DefaultMaxLine is max_line when the file leaves it out.
	DefaultMaxLine = conf.Size(1 << 20)
	minMaxLine     = 16
	maxMaxLine     = 1 << 30
)

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	c.Parse.SetDefaults()
	if c.MaxLine == 0 {
		c.MaxLine = DefaultMaxLine
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = conf.Duration(20 * time.Millisecond)
	}
	if c.MaxClients == 0 {
		c.MaxClients = 100
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = conf.Duration(10 * time.Minute)
	}
	if c.EvictIdle == 0 {
		c.EvictIdle = conf.Duration(10 * time.Second)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = conf.Duration(10 * time.Second)
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = conf.Duration(30 * time.Second)
	}
	if c.PollInterval == 0 {
		c.PollInterval = conf.Duration(250 * time.Millisecond)
	}
	if c.RotateWait == 0 {
		c.RotateWait = conf.Duration(time.Second)
	}
	if c.StartAt == "" {
		c.StartAt = "end"
	}
	if s := c.Serial; s != nil {
		if s.Baud == 0 {
			s.Baud = 9600
		}
		if s.DataBits == 0 {
			s.DataBits = 8
		}
		if s.Parity == "" {
			s.Parity = "N"
		}
		if s.StopBits == 0 {
			s.StopBits = 1
		}
	}
}

// transports names the transports that are set, in config order.
func (c *Config) transports() []string {
	var set []string
	if c.Listen != "" {
		set = append(set, "listen")
	}
	if c.Connect != "" {
		set = append(set, "connect")
	}
	if c.Serial != nil {
		set = append(set, "serial")
	}
	if c.File != "" {
		set = append(set, "file")
	}
	return set
}

// Validate checks the config. It is pure except for one check: an absolute
// file path's directory must exist and be readable, because a tail that
// can never open its file is a config error the integrator wants from
// `ferry validate`, not a source that stays down. Relative paths resolve in
// the data dir, known only at Start, which checks them the same way.
func (c *Config) Validate() error {
	var p conf.Problems
	switch set := c.transports(); len(set) {
	case 0:
		p.Add("", "no transport: set exactly one of listen (host:port), connect (host:port), serial ({device: /dev/ttyUSB0}) or file (a path)")
	case 1:
	default:
		for _, k := range set[1:] {
			p.Add(k, "only one of listen, connect, serial, file may be set; %s is set too (use one connector instance per feed)", set[0])
		}
	}
	if c.Listen != "" {
		if err := checkAddr(c.Listen, true); err != nil {
			p.Add("listen", "%v", err)
		}
	}
	if c.Connect != "" {
		if err := checkAddr(c.Connect, false); err != nil {
			p.Add("connect", "%v", err)
		}
	}
	if s := c.Serial; s != nil {
		if s.Device == "" {
			p.Add("serial.device", "missing serial device, such as /dev/ttyUSB0")
		}
		if !slices.Contains(Bauds, s.Baud) {
			p.Add("serial.baud", "%d is not a supported rate; use one of %s", s.Baud, joinInts(Bauds))
		}
		if s.DataBits < 5 || s.DataBits > 8 {
			p.Add("serial.data_bits", "%d is not one of 5, 6, 7, 8", s.DataBits)
		}
		if !slices.Contains(Parities, s.Parity) {
			p.Add("serial.parity", "%q is not one of N (none), E (even), O (odd)", s.Parity)
		}
		if s.StopBits != 1 && s.StopBits != 2 {
			p.Add("serial.stop_bits", "%d is not 1 or 2", s.StopBits)
		}
	}
	if c.File != "" && filepath.IsAbs(c.File) {
		if err := checkDir(c.File); err != nil {
			p.Add("file", "%v", err)
		}
	}
	p.Nest("parse", c.Parse.Validate())
	if c.MaxLine < minMaxLine || c.MaxLine > maxMaxLine {
		p.Add("max_line", "%s is out of range; use 16B to 1GiB (default 1MiB)", c.MaxLine)
	}
	if c.BatchSize < 1 {
		p.Add("batch_size", "must be at least 1, got %d", c.BatchSize)
	}
	if c.BatchInterval <= 0 {
		p.Add("batch_interval", "must be positive, got %s", c.BatchInterval)
	}
	if c.MaxClients < 1 {
		p.Add("max_clients", "must be at least 1, got %d", c.MaxClients)
	}
	if c.IdleTimeout <= 0 {
		p.Add("idle_timeout", "must be positive, got %s", c.IdleTimeout)
	}
	if c.EvictIdle <= 0 {
		p.Add("evict_idle", "must be positive, got %s", c.EvictIdle)
	}
	if c.DialTimeout <= 0 {
		p.Add("dial_timeout", "must be positive, got %s", c.DialTimeout)
	}
	if c.MaxBackoff <= 0 {
		p.Add("max_backoff", "must be positive, got %s", c.MaxBackoff)
	}
	if c.PollInterval <= 0 {
		p.Add("poll_interval", "must be positive, got %s", c.PollInterval)
	}
	if c.RotateWait < 0 {
		p.Add("rotate_wait", "must not be negative, got %s", c.RotateWait)
	}
	if !slices.Contains(StartAts, c.StartAt) {
		p.Add("start_at", "%q is not one of %s", c.StartAt, strings.Join(StartAts, ", "))
	}
	return p.Err()
}

// checkAddr checks host:port; a listener may leave the host out (all
// interfaces) and use port 0 (any free port).
func checkAddr(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port, as in 127.0.0.1:7000", addr)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host; expected host:port, as in plc-gw.local:7000", addr)
	}
	lo := 1
	if listen {
		lo = 0
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < lo || n > 65535 {
		return fmt.Errorf("port %q of %q is not in %d..65535", port, addr, lo)
	}
	return nil
}

// checkDir checks that the directory of path exists and can be listed and
// read, so that the file can be opened when it appears and found again
// after a rotation.
func checkDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("directory %s of %s: %w", dir, path, unwrapPath(err))
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := syscall.Access(dir, 0x4|0x1); err != nil { // R_OK|X_OK
		return fmt.Errorf("directory %s of %s is not readable by ferry: %w", dir, path, err)
	}
	return nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func joinInts(l []int) string {
	s := make([]string, len(l))
	for i, n := range l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
