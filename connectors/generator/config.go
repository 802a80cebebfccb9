package generator

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Config is the generator's section of ferry.yaml.
type Config struct {
	Devices      int           `yaml:"devices"`
	DevicePrefix string        `yaml:"device_prefix"`
	Interval     conf.Duration `yaml:"interval"`
	// BatchSize caps records per batch when devices × tags is large.
	BatchSize int         `yaml:"batch_size"`
	Tags      []TagConfig `yaml:"tags"`
}

// TagConfig is one generated signal.
type TagConfig struct {
	Name   string        `yaml:"name"`
	Signal string        `yaml:"signal"`
	Min    float64       `yaml:"min"`
	Max    float64       `yaml:"max"`
	Period conf.Duration `yaml:"period"`
	Unit   string        `yaml:"unit"`
	// Count > 1 makes Count tags named <name>1 … <name>N with spread phases.
	Count int `yaml:"count"`
	// Step is the counter increment, or the largest random-walk move.
	Step float64 `yaml:"step"`
}

// Signals are the waveforms a tag can have.
var Signals = []string{"sine", "ramp", "random_walk", "counter", "step"}

// SetDefaults fills what the file left out.
func (c *Config) SetDefaults() {
	if c.Devices == 0 {
		c.Devices = 1
	}
	if c.DevicePrefix == "" {
		c.DevicePrefix = "device"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	for i := range c.Tags {
		t := &c.Tags[i]
		if t.Signal == "" {
			t.Signal = "sine"
		}
		if t.Count == 0 {
			t.Count = 1
		}
		if t.Period == 0 {
			t.Period = conf.Duration(60e9)
		}
		if t.Min == 0 && t.Max == 0 && t.Signal != "counter" {
			t.Max = 100
		}
		if t.Step == 0 {
			if t.Signal == "counter" {
				t.Step = 1
			} else {
				t.Step = (t.Max - t.Min) / 50
			}
		}
	}
}

// Validate checks the config without side effects.
func (c *Config) Validate() error {
	var p conf.Problems
	if c.Devices < 1 {
		p.Add("devices", "must be at least 1, got %d", c.Devices)
	}
	if c.BatchSize < 1 {
		p.Add("batch_size", "must be at least 1, got %d", c.BatchSize)
	}
	if len(c.Tags) == 0 {
		p.Add("tags", "at least one tag is needed")
	}
	names := map[string]bool{}
	for i, t := range c.Tags {
		path := fmt.Sprintf("tags[%d]", i)
		if t.Name == "" {
			p.Add(path+".name", "missing tag name")
		} else if names[t.Name] {
			p.Add(path+".name", "tag %q is defined twice", t.Name)
		}
		names[t.Name] = true
		if !slices.Contains(Signals, t.Signal) {
			p.Add(path+".signal", "%q is not one of %s", t.Signal, strings.Join(Signals, ", "))
		}
		if t.Count < 1 {
			p.Add(path+".count", "must be at least 1, got %d", t.Count)
		}
		if math.IsNaN(t.Min) || math.IsNaN(t.Max) || t.Max < t.Min {
			p.Add(path+".max", "max (%g) must not be below min (%g)", t.Max, t.Min)
		}
		if t.Period <= 0 {
			p.Add(path+".period", "must be positive")
		}
	}
	return p.Err()
}
