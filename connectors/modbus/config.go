package modbus

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the modbus connector's section of ferry.yaml. The settings at
// the top are defaults for every device; a device may set its own.
type Config struct {
	Settings `yaml:",inline"`
	// Profiles are named descriptions of devices that do not follow the
	// protocol to the letter; a device picks one with profile: NAME.
	Profiles map[string]Profile `yaml:"profiles"`
	Devices  []DeviceConfig     `yaml:"devices"`
}

// Settings are the per-device settings that may also be given once for all
// devices at the top of the section. Pointers tell "not set" from zero.
type Settings struct {
	PollInterval conf.Duration `yaml:"poll_interval"`
	Timeout      conf.Duration `yaml:"timeout"`
	// Retries is how many times a request that got no answer is sent again
	// (on a fresh connection) before the device counts as not answering.
	Retries *int `yaml:"retries"`
	// MaxBackoff caps the wait between attempts to reach a device that does
	// not answer; the wait starts at the poll interval and doubles.
	MaxBackoff conf.Duration `yaml:"max_backoff"`
	ByteOrder  string        `yaml:"byte_order"`
	// MaxGap is the most unused registers a read may span to join two
	// tags; MaxBitGap the same for coils and discrete inputs.
	MaxGap            *int           `yaml:"max_gap"`
	MaxBitGap         *int           `yaml:"max_bit_gap"`
	ReportByException *bool          `yaml:"report_by_exception"`
	Heartbeat         *conf.Duration `yaml:"heartbeat"`
	Profile           string         `yaml:"profile"`
	Pacing            `yaml:",inline"`
	// VerifyWrites reads a written tag back after the device confirmed
	// the write, and fails the write when the device did not keep it.
	VerifyWrites *bool `yaml:"verify_writes"`
}

// Pacing is how gently a slow or limited device (often a serial gateway)
// must be talked to. It may be set at the top, in a profile, or on a
// device; the device's own setting wins, then its profile's, then the
// top's.
type Pacing struct {
	// PauseAfterConnect is a wait between opening a connection and the
	// first request on it, for gateways that drop a request sent at once.
	PauseAfterConnect conf.Duration `yaml:"pause_after_connect"`
	// PauseBetweenRequests is the least silence between a response and
	// the next request to the device.
	PauseBetweenRequests conf.Duration `yaml:"pause_between_requests"`
	// CloseAfterPoll closes the connection after every poll cycle (and
	// write), for gateways that allow few connections.
	CloseAfterPoll *bool `yaml:"close_after_poll"`
	// SingleRegisterWrite is the function that writes one register: fc6
	// (the default) or fc16 for devices that reject FC 6.
	SingleRegisterWrite string `yaml:"single_register_write"`
	// SingleCoilWrite is the function that writes one coil: fc5 (the
	// default) or fc15.
	SingleCoilWrite string `yaml:"single_coil_write"`
}

// Profile describes a non-conforming device, as data.
type Profile struct {
	// MaxRegisters is the most registers the device serves in one read or
	// write (the protocol allows 125); MaxBits the same for bits (2000).
	MaxRegisters int `yaml:"max_registers"`
	MaxBits      int `yaml:"max_bits"`
	// OneRequestPerTag reads every tag with its own request.
	OneRequestPerTag bool `yaml:"one_request_per_tag"`
	// CoilsFromZero: the device's manual numbers coils (and discrete
	// inputs) in Modicon notation from 00000 / 10000, not 00001 / 10001.
	CoilsFromZero bool `yaml:"coils_from_zero"`
	// StringBytePerRegister: strings hold one character per register, in
	// the low byte.
	StringBytePerRegister bool `yaml:"string_byte_per_register"`
	Pacing                `yaml:",inline"`
}

// DeviceConfig is one device (a unit ID behind an endpoint).
type DeviceConfig struct {
	Name string `yaml:"name"`
	// Endpoint is tcp://HOST[:PORT], rtu-over-tcp://HOST[:PORT],
	// rtu:///dev/PATH?baud=19200&parity=E or ascii:///dev/PATH?... .
	// Devices with the same endpoint share one connection.
	Endpoint string `yaml:"endpoint"`
	Unit     *int   `yaml:"unit"`
	Settings `yaml:",inline"`
	Tags     []TagConfig `yaml:"tags"`
}

// TagConfig is one value of a device, as its manual lists it.
type TagConfig struct {
	Name string `yaml:"name"`
	// Area is coil, discrete, input or holding. Without it, Address is in
	// Modicon notation (40001 = first holding register).
	Area    string  `yaml:"area"`
	Address Address `yaml:"address"`
	Type    string  `yaml:"type"`
	// Bit is the bit of the register (0 = least significant) for type bit.
	Bit *int `yaml:"bit"`
	// Length is a string's size in characters.
	Length    int      `yaml:"length"`
	ByteOrder string   `yaml:"byte_order"`
	Scale     *float64 `yaml:"scale"`
	Offset    float64  `yaml:"offset"`
	Unit      string   `yaml:"unit"`
	// Writable allows write-back to a coil or holding tag.
	Writable bool `yaml:"writable"`
	// PollInterval puts the tag in a poll group of its own interval;
	// unset, the tag is polled at the device's poll_interval.
	PollInterval conf.Duration `yaml:"poll_interval"`
}

// Address is a tag address as written in the file. It keeps the text,
// because "00001" (a Modicon coil) and "1" mean different things.
type Address struct {
	Text string
	Set  bool
	Kind yaml.Kind
}

// UnmarshalYAML keeps the scalar's text; Validate interprets it.
func (a *Address) UnmarshalYAML(n *yaml.Node) error {
	a.Text, a.Set, a.Kind = n.Value, true, n.Kind
	return nil
}

// Defaults.
const (
	DefaultPollInterval = time.Second
	DefaultTimeout      = time.Second
	DefaultRetries      = 1
	DefaultMaxBackoff   = 30 * time.Second
	DefaultMaxGap       = 10
	DefaultMaxBitGap    = 160
	DefaultHeartbeat    = time.Minute
	DefaultPort         = "502"
	DefaultBaud         = 19200
)

// Transports are the endpoint URL schemes.
var Transports = []string{"tcp", "udp", "rtu-over-tcp", "rtu", "ascii"}

// Write function choices.
var (
	RegisterWriteFunctions = []string{"fc6", "fc16"}
	CoilWriteFunctions     = []string{"fc5", "fc15"}
)

// MaxPause bounds pause_after_connect and pause_between_requests: a longer
// pause is a typo more often than a device.
const MaxPause = time.Minute

// SetDefaults fills the connector-wide defaults; devices inherit from them
// when they are used (see settings), so Validate can tell where a bad value
// was written.
func (c *Config) SetDefaults() {
	s := &c.Settings
	if s.PollInterval == 0 {
		s.PollInterval = conf.Duration(DefaultPollInterval)
	}
	if s.Timeout == 0 {
		s.Timeout = conf.Duration(DefaultTimeout)
	}
	if s.Retries == nil {
		s.Retries = ptr(DefaultRetries)
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = conf.Duration(DefaultMaxBackoff)
	}
	if s.ByteOrder == "" {
		s.ByteOrder = ABCD.String()
	}
	if s.MaxGap == nil {
		s.MaxGap = ptr(DefaultMaxGap)
	}
	if s.MaxBitGap == nil {
		s.MaxBitGap = ptr(DefaultMaxBitGap)
	}
	if s.ReportByException == nil {
		s.ReportByException = ptr(false)
	}
	if s.Heartbeat == nil {
		s.Heartbeat = ptr(conf.Duration(DefaultHeartbeat))
	}
}

func ptr[T any](v T) *T { return &v }

// settings are a device's effective settings.
type settings struct {
	poll, timeout, maxBackoff, heartbeat time.Duration
	retries, maxGap, maxBitGap           int
	order                                Order
	rbe                                  bool
	profile                              Profile
	profileName                          string
	pauseConnect, pauseBetween           time.Duration
	closeAfterPoll, verifyWrites         bool
	regFC16, coilFC15                    bool
}

// effective merges a device's own settings over the connector's.
func (c *Config) effective(d *DeviceConfig) settings {
	top, own := c.Settings, d.Settings
	pick := func(a, b conf.Duration) time.Duration {
		if a != 0 {
			return a.D()
		}
		return b.D()
	}
	pickInt := func(a, b *int) int {
		if a != nil {
			return *a
		}
		if b != nil {
			return *b
		}
		return 0
	}
	s := settings{
		poll:       pick(own.PollInterval, top.PollInterval),
		timeout:    pick(own.Timeout, top.Timeout),
		maxBackoff: pick(own.MaxBackoff, top.MaxBackoff),
		retries:    pickInt(own.Retries, top.Retries),
		maxGap:     pickInt(own.MaxGap, top.MaxGap),
		maxBitGap:  pickInt(own.MaxBitGap, top.MaxBitGap),
	}
	if own.Heartbeat != nil {
		s.heartbeat = own.Heartbeat.D()
	} else if top.Heartbeat != nil {
		s.heartbeat = top.Heartbeat.D()
	}
	if own.ReportByException != nil {
		s.rbe = *own.ReportByException
	} else if top.ReportByException != nil {
		s.rbe = *top.ReportByException
	}
	bo := own.ByteOrder
	if bo == "" {
		bo = top.ByteOrder
	}
	s.order, _ = ParseOrder(bo)
	s.profileName = own.Profile
	if s.profileName == "" {
		s.profileName = top.Profile
	}
	s.profile = c.Profiles[s.profileName]
	// Pacing: the device's own, then its profile's, then the top's.
	pr := s.profile.Pacing
	pickD := func(f func(*Pacing) conf.Duration) time.Duration {
		for _, p := range []*Pacing{&own.Pacing, &pr, &top.Pacing} {
			if v := f(p); v != 0 {
				return v.D()
			}
		}
		return 0
	}
	pickS := func(f func(*Pacing) string) string {
		for _, p := range []*Pacing{&own.Pacing, &pr, &top.Pacing} {
			if v := f(p); v != "" {
				return v
			}
		}
		return ""
	}
	s.pauseConnect = pickD(func(p *Pacing) conf.Duration { return p.PauseAfterConnect })
	s.pauseBetween = pickD(func(p *Pacing) conf.Duration { return p.PauseBetweenRequests })
	for _, p := range []*Pacing{&own.Pacing, &pr, &top.Pacing} {
		if p.CloseAfterPoll != nil {
			s.closeAfterPoll = *p.CloseAfterPoll
			break
		}
	}
	s.regFC16 = pickS(func(p *Pacing) string { return p.SingleRegisterWrite }) == "fc16"
	s.coilFC15 = pickS(func(p *Pacing) string { return p.SingleCoilWrite }) == "fc15"
	if own.VerifyWrites != nil {
		s.verifyWrites = *own.VerifyWrites
	} else if top.VerifyWrites != nil {
		s.verifyWrites = *top.VerifyWrites
	}
	return s
}

// Validate checks the whole section without I/O and reports every problem
// with its field path (devices[NAME].tags[N].field).
func (c *Config) Validate() error {
	_, p := c.build()
	return p.Err()
}

// build turns the config into device specs, collecting every problem. It
// is pure; Validate, Start and Plan share it.
func (c *Config) build() ([]*deviceSpec, conf.Problems) {
	var p conf.Problems
	c.Settings.validate(&p, "", c.Profiles)
	names := make([]string, 0, len(c.Profiles))
	for name, pr := range c.Profiles {
		names = append(names, name)
		path := "profiles." + name
		if pr.MaxRegisters < 0 || pr.MaxRegisters > 125 {
			p.Add(path+".max_registers", "%d is not in 1..125 (0: the protocol's 125)", pr.MaxRegisters)
		}
		if pr.MaxBits < 0 || pr.MaxBits > 2000 {
			p.Add(path+".max_bits", "%d is not in 1..2000 (0: the protocol's 2000)", pr.MaxBits)
		}
		pr.Pacing.validate(&p, path)
	}
	sort.Strings(names)
	if len(c.Devices) == 0 {
		p.Add("devices", "at least one device is needed")
	}
	seen := map[string]int{}
	for _, d := range c.Devices {
		seen[d.Name]++
	}
	var specs []*deviceSpec
	for i := range c.Devices {
		d := &c.Devices[i]
		path := "devices[" + strconv.Itoa(i) + "]"
		if d.Name != "" && seen[d.Name] == 1 {
			path = "devices[" + d.Name + "]"
		}
		switch {
		case d.Name == "":
			p.Add(path+".name", "missing device name")
		case seen[d.Name] > 1:
			p.Add(path+".name", "device %q is defined %d times; device names must be unique", d.Name, seen[d.Name])
		}
		spec := c.buildDevice(d, path, &p)
		specs = append(specs, spec)
	}
	return specs, p
}

func (pc *Pacing) validate(p *conf.Problems, path string) {
	at := func(f string) string { return conf.Join(path, f) }
	if d := pc.PauseAfterConnect.D(); d > MaxPause {
		p.Add(at("pause_after_connect"), "%s is not in 0s..%s", d, MaxPause)
	}
	if d := pc.PauseBetweenRequests.D(); d > MaxPause {
		p.Add(at("pause_between_requests"), "%s is not in 0s..%s", d, MaxPause)
	}
	if v := pc.SingleRegisterWrite; v != "" && !slices.Contains(RegisterWriteFunctions, v) {
		p.Add(at("single_register_write"), "%q is not one of %s", v, strings.Join(RegisterWriteFunctions, ", "))
	}
	if v := pc.SingleCoilWrite; v != "" && !slices.Contains(CoilWriteFunctions, v) {
		p.Add(at("single_coil_write"), "%q is not one of %s", v, strings.Join(CoilWriteFunctions, ", "))
	}
}

func (s *Settings) validate(p *conf.Problems, path string, profiles map[string]Profile) {
	at := func(f string) string { return conf.Join(path, f) }
	s.Pacing.validate(p, path)
	if s.ByteOrder != "" {
		if _, ok := ParseOrder(s.ByteOrder); !ok {
			p.Add(at("byte_order"), "%q is not one of %s", s.ByteOrder, strings.Join(OrderNames, ", "))
		}
	}
	if s.Retries != nil && (*s.Retries < 0 || *s.Retries > 10) {
		p.Add(at("retries"), "%d is not in 0..10", *s.Retries)
	}
	if s.MaxGap != nil && (*s.MaxGap < 0 || *s.MaxGap > 124) {
		p.Add(at("max_gap"), "%d is not in 0..124 registers", *s.MaxGap)
	}
	if s.MaxBitGap != nil && (*s.MaxBitGap < 0 || *s.MaxBitGap > 1999) {
		p.Add(at("max_bit_gap"), "%d is not in 0..1999 bits", *s.MaxBitGap)
	}
	if s.Profile != "" {
		if _, ok := profiles[s.Profile]; !ok {
			names := make([]string, 0, len(profiles))
			for n := range profiles {
				names = append(names, n)
			}
			sort.Strings(names)
			if len(names) == 0 {
				p.Add(at("profile"), "unknown profile %q; no profiles are defined (add them under profiles:)", s.Profile)
			} else {
				p.Add(at("profile"), "unknown profile %q; defined profiles are %s", s.Profile, strings.Join(names, ", "))
			}
		}
	}
}

// deviceSpec is a validated device: its settings, endpoint and tags.
type deviceSpec struct {
	name     string
	endpoint Endpoint
	unit     uint8
	set      settings
	tags     []tagSpec
}

// tagSpec is a resolved tag.
type tagSpec struct {
	name, unit string
	area       Area
	addr       uint16 // protocol (0-based) address
	size       int    // registers, or 1 bit
	typ        Type
	order      Order
	bit        uint8
	strLen     int
	byteEach   bool
	scale      float64
	offset     float64
	scaled     bool
	writable   bool
	overlaps   bool          // reported as overlapping; not compared again
	interval   time.Duration // the tag's poll group; 0: the device's poll_interval
}

func (t *tagSpec) end() int { return int(t.addr) + t.size }

func (c *Config) buildDevice(d *DeviceConfig, path string, p *conf.Problems) *deviceSpec {
	d.Settings.validate(p, path, c.Profiles)
	set := c.effective(d)
	spec := &deviceSpec{name: d.Name, set: set}
	if set.poll <= 0 {
		p.Add(path+".poll_interval", "must be positive")
	}
	if set.timeout <= 0 {
		p.Add(path+".timeout", "must be positive")
	}
	ep, err := ParseEndpoint(d.Endpoint)
	if err != nil {
		p.Add(path+".endpoint", "%v", err)
	}
	spec.endpoint = ep
	unit := 1
	if d.Unit != nil {
		unit = *d.Unit
	}
	lo, hi := 0, 255
	if err == nil && ep.Serial() {
		lo, hi = 1, 247
	}
	if unit < lo || unit > hi {
		p.Add(path+".unit", "%d is not a unit ID in %d..%d", unit, lo, hi)
	}
	spec.unit = uint8(unit)
	if len(d.Tags) == 0 {
		p.Add(path+".tags", "a device needs at least one tag")
	}
	first := map[string]int{}
	for j := range d.Tags {
		tc := &d.Tags[j]
		tp := path + ".tags[" + strconv.Itoa(j) + "]"
		if tc.Name == "" {
			p.Add(tp+".name", "missing tag name")
		} else if k, dup := first[tc.Name]; dup {
			p.Add(tp+".name", "tag %q is defined twice in device %q (first at tags[%d])", tc.Name, d.Name, k)
		} else {
			first[tc.Name] = j
		}
		t, ok := buildTag(tc, set, tp, p)
		if ok {
			spec.tags = append(spec.tags, t)
			spec.checkOverlap(len(spec.tags)-1, d, tp, p)
		} else {
			spec.tags = append(spec.tags, tagSpec{name: tc.Name, size: -1})
		}
	}
	return spec
}

// checkOverlap reports tag i when it shares registers with an earlier tag
// in a way no device lays values out: two values may cover exactly the same
// registers (a status word read as uint16 and as int16), and a bit tag may
// sit in any register, but a value cannot start inside another.
func (d *deviceSpec) checkOverlap(i int, dc *DeviceConfig, path string, p *conf.Problems) {
	t := &d.tags[i]
	if t.typ == TBit || t.area.Bits() {
		return
	}
	for j := range i {
		o := &d.tags[j]
		if o.size <= 0 || o.overlaps || o.area != t.area || o.typ == TBit {
			continue
		}
		if int(t.addr) >= o.end() || int(o.addr) >= t.end() {
			continue
		}
		if t.addr == o.addr && t.size == o.size {
			continue
		}
		p.Add(path+".address", "%s at %s %s overlaps tags[%d] %q (%s at %s %s): a register belongs to one value, unless both tags cover exactly the same registers",
			t.typ, t.area, span(int(t.addr), t.size), j, dc.Tags[j].Name, o.typ, o.area, span(int(o.addr), o.size))
		t.overlaps = true
		return
	}
}

func span(a, n int) string {
	if n == 1 {
		return strconv.Itoa(a)
	}
	return strconv.Itoa(a) + "-" + strconv.Itoa(a+n-1)
}

func buildTag(tc *TagConfig, set settings, path string, p *conf.Problems) (tagSpec, bool) {
	t := tagSpec{name: tc.Name, unit: tc.Unit, writable: tc.Writable, order: set.order, scale: 1, interval: tc.PollInterval.D()}
	if t.interval == set.poll {
		t.interval = 0 // the device's own group
	}
	ok := true
	bad := func(field, format string, args ...any) {
		p.Add(path+"."+field, format, args...)
		ok = false
	}
	// Area and address.
	var addr int
	if tc.Area != "" {
		a, known := ParseArea(tc.Area)
		if !known {
			bad("area", "unknown area %q; expected one of %s", tc.Area, strings.Join(AreaNames, ", "))
			return t, false
		}
		t.area = a
		if !tc.Address.Set {
			bad("address", "missing address")
			return t, false
		}
		n, err := parseZeroBased(tc.Address)
		if err != nil {
			bad("address", "%v", err)
			return t, false
		}
		addr = n
	} else {
		if !tc.Address.Set {
			bad("address", "missing address: give area and a 0-based address, or a Modicon address such as 40001")
			return t, false
		}
		a, n, err := parseModicon(tc.Address, set.profile.CoilsFromZero)
		if err != nil {
			bad("address", "%v", err)
			return t, false
		}
		t.area, addr = a, n
	}
	// Type.
	if tc.Type == "" {
		t.typ = TUint16
		if t.area.Bits() {
			t.typ = TBool
		}
	} else {
		typ, known := ParseType(tc.Type)
		if !known {
			bad("type", "unknown type %q; expected one of %s", tc.Type, strings.Join(TypeNames, ", "))
			return t, false
		}
		t.typ = typ
	}
	switch {
	case t.area.Bits() && t.typ != TBool:
		bad("type", "%s does not fit a %s: coils and discrete inputs hold single bits; use type bool", t.typ, t.area)
		return t, false
	case !t.area.Bits() && t.typ == TBool:
		bad("type", "bool does not fit %s registers; use type bit with bit: 0..15 for one bit of a register", t.area)
		return t, false
	}
	// Size.
	switch t.typ {
	case TBool:
		t.size = 1
	case TString:
		t.byteEach = set.profile.StringBytePerRegister
		maxLen := 250
		if t.byteEach {
			maxLen = 125
		}
		switch {
		case tc.Length <= 0:
			bad("length", "a string needs length: its size in characters (1..%d)", maxLen)
			return t, false
		case tc.Length > maxLen:
			bad("length", "%d characters do not fit one read; at most %d", tc.Length, maxLen)
			return t, false
		}
		t.strLen = tc.Length
		t.size = (tc.Length + 1) / 2
		if t.byteEach {
			t.size = tc.Length
		}
	default:
		t.size = t.typ.words()
	}
	if tc.Length != 0 && t.typ != TString {
		bad("length", "length applies to type string only")
	}
	if t.typ == TBit {
		switch {
		case tc.Bit == nil:
			bad("bit", "type bit needs bit: the bit of the register, 0 (least significant) to 15")
		case *tc.Bit < 0 || *tc.Bit > 15:
			bad("bit", "%d is not a bit of a register; expected 0..15", *tc.Bit)
		default:
			t.bit = uint8(*tc.Bit)
		}
	} else if tc.Bit != nil {
		bad("bit", "bit applies to type bit only")
	}
	if addr+t.size > 1<<16 {
		bad("address", "%s at %s %d needs %s %s, past the last address 65535", t.typ, t.area, addr, unitWord(t.area, t.size), span(addr, t.size))
		return t, false
	}
	t.addr = uint16(addr)
	if max := maxCount(t.area, set.profile); t.size > max {
		field := "type"
		if t.typ == TString {
			field = "length"
		}
		bad(field, "%s of %d registers does not fit one read of at most %d", t.typ, t.size, max)
	}
	// Order, scale, writability.
	if tc.ByteOrder != "" {
		o, known := ParseOrder(tc.ByteOrder)
		if !known {
			bad("byte_order", "%q is not one of %s", tc.ByteOrder, strings.Join(OrderNames, ", "))
		}
		t.order = o
	}
	if tc.Scale != nil || tc.Offset != 0 {
		switch {
		case !t.typ.numeric():
			bad("scale", "scale and offset apply to numbers, not %s", t.typ)
		case tc.Scale != nil && (*tc.Scale == 0 || math.IsNaN(*tc.Scale) || math.IsInf(*tc.Scale, 0)):
			bad("scale", "%v is not a usable factor; expected a non-zero number", *tc.Scale)
		case math.IsNaN(tc.Offset) || math.IsInf(tc.Offset, 0):
			bad("offset", "%v is not a number", tc.Offset)
		default:
			if tc.Scale != nil {
				t.scale = *tc.Scale
			}
			t.offset = tc.Offset
			t.scaled = t.scale != 1 || t.offset != 0
		}
	}
	if tc.Writable && !t.area.Writable() {
		bad("writable", "%s are read-only; only coil and holding tags can be written", areaNoun(t.area))
	}
	return t, ok
}

func unitWord(a Area, n int) string {
	switch {
	case a == Coil && n == 1:
		return "coil"
	case a == Coil:
		return "coils"
	case a == Discrete && n == 1:
		return "input"
	case a == Discrete:
		return "inputs"
	case n == 1:
		return "register"
	}
	return "registers"
}

func areaNoun(a Area) string {
	return [...]string{"coils", "discrete inputs", "input registers", "holding registers"}[a]
}

func maxCount(a Area, pr Profile) int {
	if a.Bits() {
		if pr.MaxBits > 0 {
			return pr.MaxBits
		}
		return 2000
	}
	if pr.MaxRegisters > 0 {
		return pr.MaxRegisters
	}
	return 125
}

// parseZeroBased reads a 0-based address: decimal, or hex with 0x.
func parseZeroBased(a Address) (int, error) {
	if a.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("expected a number")
	}
	s := a.Text
	base := 10
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s, base = s[2:], 16
	}
	n, err := strconv.ParseUint(s, base, 32)
	if err != nil || s == "" {
		return 0, fmt.Errorf("%q is not an address; expected a whole number 0..65535 (or hex such as 0x1F40)", a.Text)
	}
	if n > 65535 {
		return 0, fmt.Errorf("address %s is out of range 0..65535", a.Text)
	}
	return int(n), nil
}

// parseModicon reads a 5- or 6-digit Modicon address: the first digit is the
// area (0 coil, 1 discrete, 3 input, 4 holding), the rest the 1-based
// number. coilsFromZero takes coil and discrete numbers as 0-based.
func parseModicon(a Address, coilsFromZero bool) (Area, int, error) {
	if a.Kind != yaml.ScalarNode {
		return 0, 0, fmt.Errorf("expected a number")
	}
	s := a.Text
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, 0, fmt.Errorf("%q is not an address; without area, write a Modicon address of 5 or 6 digits such as 40001", s)
		}
	}
	if len(s) != 5 && len(s) != 6 {
		return 0, 0, fmt.Errorf("address %s has no area: give area (%s) for a 0-based address, or write a Modicon address of 5 or 6 digits such as 40001", s, strings.Join(AreaNames, ", "))
	}
	var area Area
	switch s[0] {
	case '0':
		area = Coil
	case '1':
		area = Discrete
	case '3':
		area = Input
	case '4':
		area = Holding
	default:
		return 0, 0, fmt.Errorf("Modicon address %s starts with %c; the first digit must be 0 (coil), 1 (discrete), 3 (input) or 4 (holding)", s, s[0])
	}
	n, _ := strconv.Atoi(s[1:])
	first, last := 1, 9999
	if len(s) == 6 {
		last = 65536
	}
	if coilsFromZero && area.Bits() {
		first, last = 0, last-1
	}
	if n < first || n > last {
		return 0, 0, fmt.Errorf("Modicon address %s is out of range: %s are numbered %c%0*d to %c%0*d", s, areaNoun(area), s[0], len(s)-1, first, s[0], len(s)-1, last)
	}
	if !(coilsFromZero && area.Bits()) {
		n--
	}
	return area, n, nil
}

// Endpoint is a parsed endpoint URL.
type Endpoint struct {
	Transport string // tcp, udp, rtu-over-tcp, rtu, ascii
	Addr      string // host:port for TCP transports
	Device    string // serial device path
	Baud      int
	DataBits  int
	StopBits  int
	Parity    string // N, E, O
	raw       string
}

// Serial reports whether the endpoint is a serial line.
func (e Endpoint) Serial() bool { return e.Transport == "rtu" || e.Transport == "ascii" }

// String returns the endpoint as configured.
func (e Endpoint) String() string { return e.raw }

// ParseEndpoint parses an endpoint URL.
func ParseEndpoint(s string) (Endpoint, error) {
	e := Endpoint{raw: s}
	if s == "" {
		return e, fmt.Errorf("missing endpoint; expected tcp://HOST:PORT, udp://HOST:PORT, rtu-over-tcp://HOST:PORT, rtu:///dev/PORT or ascii:///dev/PORT")
	}
	if !strings.Contains(s, "://") {
		return e, fmt.Errorf("bad endpoint URL %q: no transport; expected one of %s, as in tcp://%s", s, strings.Join(Transports, ", "), s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return e, fmt.Errorf("bad endpoint URL %q: %v", s, unwrapURL(err))
	}
	e.Transport = u.Scheme
	switch u.Scheme {
	case "tcp", "udp", "rtu-over-tcp":
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return e, fmt.Errorf("bad endpoint URL %q: a %s endpoint is HOST:PORT only", s, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return e, fmt.Errorf("bad endpoint URL %q: missing host", s)
		}
		if port == "" {
			if strings.HasSuffix(u.Host, ":") {
				return e, fmt.Errorf("bad endpoint URL %q: empty port", s)
			}
			port = DefaultPort
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return e, fmt.Errorf("bad endpoint URL %q: port %q is not in 1..65535", s, port)
		}
		e.Addr = net.JoinHostPort(host, port)
	case "rtu", "ascii":
		e.Device = u.Path
		if e.Device == "" {
			e.Device = u.Host // rtu://COM3
		} else if u.Host != "" {
			return e, fmt.Errorf("bad endpoint URL %q: a serial endpoint is %s:///dev/PORT (three slashes)", s, u.Scheme)
		}
		if e.Device == "" {
			return e, fmt.Errorf("bad endpoint URL %q: missing serial device, as in %s:///dev/ttyUSB0", s, u.Scheme)
		}
		e.Baud, e.DataBits, e.StopBits, e.Parity = DefaultBaud, 8, 1, "E"
		if u.Scheme == "ascii" {
			e.DataBits = 7
		}
		for k, vs := range u.Query() {
			v := vs[len(vs)-1]
			var err error
			switch k {
			case "baud":
				e.Baud, err = intIn(v, 50, 4000000)
			case "data_bits":
				e.DataBits, err = intIn(v, 5, 8)
			case "stop_bits":
				e.StopBits, err = intIn(v, 1, 2)
			case "parity":
				if v != "N" && v != "E" && v != "O" {
					err = fmt.Errorf("%q is not one of N, E, O", v)
				}
				e.Parity = v
			default:
				return e, fmt.Errorf("bad endpoint URL %q: unknown setting %q; serial settings are baud, data_bits, parity, stop_bits", s, k)
			}
			if err != nil {
				return e, fmt.Errorf("bad endpoint URL %q: %s: %v", s, k, err)
			}
		}
	default:
		return e, fmt.Errorf("unknown transport %q in %q; expected one of %s", u.Scheme, s, strings.Join(Transports, ", "))
	}
	return e, nil
}

func intIn(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not in %d..%d", s, lo, hi)
	}
	return n, nil
}

func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
