package modbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// LearnedFile is the name of the file, in the connector's data directory,
// that keeps the limits learned from devices' exceptions across restarts.
const LearnedFile = "learned.json"

// learnedArea is what ferry learned about one area of a device.
type learnedArea struct {
	// MaxCount is the longest read (registers or bits) the device served
	// after rejecting a longer one; 0 = no limit learned.
	MaxCount int `json:"max_count,omitempty"`
	// Avoid are address ranges the device rejects: gaps that must not be
	// read through, and tags that are read on their own (and come back
	// BAD with the device's exception code).
	Avoid []rng `json:"avoid,omitempty"`
}

// learnedDevice is what ferry learned about one device. Endpoint and unit
// identify it: when either changes in the config, what was learned is
// dropped and learned again.
type learnedDevice struct {
	Endpoint string                  `json:"endpoint"`
	Unit     int                     `json:"unit"`
	Areas    map[string]*learnedArea `json:"areas"`
	Updated  time.Time               `json:"updated"`
}

func (l *learnedDevice) area(a Area) *learnedArea {
	if l == nil {
		return nil
	}
	return l.Areas[a.String()]
}

func (l *learnedDevice) areaFor(a Area) *learnedArea {
	if l.Areas == nil {
		l.Areas = map[string]*learnedArea{}
	}
	la := l.Areas[a.String()]
	if la == nil {
		la = &learnedArea{}
		l.Areas[a.String()] = la
	}
	return la
}

// describe renders what was learned, for `ferry plan` and logs.
func (l *learnedDevice) describe() []string {
	if l == nil {
		return nil
	}
	var out []string
	for a := Coil; a <= Holding; a++ {
		la := l.area(a)
		if la == nil {
			continue
		}
		if la.MaxCount > 0 {
			out = append(out, fmt.Sprintf("%s: at most %d %s per read", a, la.MaxCount, unitWord(a, 2)))
		}
		for _, r := range la.Avoid {
			out = append(out, fmt.Sprintf("%s %s: rejected by the device; never read together with other tags", a, span(r.First, r.Last-r.First+1)))
		}
	}
	return out
}

func (l *learnedDevice) clone() *learnedDevice {
	if l == nil {
		return &learnedDevice{}
	}
	c := &learnedDevice{Endpoint: l.Endpoint, Unit: l.Unit, Updated: l.Updated, Areas: map[string]*learnedArea{}}
	for k, v := range l.Areas {
		a := *v
		a.Avoid = append([]rng(nil), v.Avoid...)
		c.Areas[k] = &a
	}
	return c
}

// learnedStore is the learned limits of one connector instance, kept in
// a JSON file (written atomically) when there is a data directory.
type learnedStore struct {
	mu      sync.Mutex
	path    string                    // "" = memory only
	Devices map[string]*learnedDevice `json:"devices"`
}

func loadLearned(path string) (*learnedStore, error) {
	s := &learnedStore{path: path, Devices: map[string]*learnedDevice{}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("learned limits: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		return &learnedStore{path: path, Devices: map[string]*learnedDevice{}}, fmt.Errorf("learned limits %s: %w (starting afresh)", path, err)
	}
	if s.Devices == nil {
		s.Devices = map[string]*learnedDevice{}
	}
	return s, nil
}

// get returns what was learned about d, or nil (also when d's endpoint or
// unit changed since).
func (s *learnedStore) get(d *deviceSpec) *learnedDevice {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.Devices[d.name]
	if l == nil || l.Endpoint != d.endpoint.String() || l.Unit != int(d.unit) {
		return nil
	}
	return l.clone()
}

// put stores l for d and writes the file.
func (s *learnedStore) put(d *deviceSpec, l *learnedDevice) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l = l.clone()
	l.Endpoint, l.Unit, l.Updated = d.endpoint.String(), int(d.unit), time.Now().UTC().Truncate(time.Second)
	s.Devices[d.name] = l
	if s.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("learned limits: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("learned limits: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// addAvoid adds r to the area's avoided ranges, merged and sorted.
func (la *learnedArea) addAvoid(r rng) bool {
	for _, x := range la.Avoid {
		if x.First <= r.First && r.Last <= x.Last {
			return false
		}
	}
	la.Avoid = append(la.Avoid, r)
	sort.Slice(la.Avoid, func(i, j int) bool { return la.Avoid[i].First < la.Avoid[j].First })
	return true
}
