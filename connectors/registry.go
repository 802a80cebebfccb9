package connectors

import (
	"fmt"
	"sort"
	"sync"
)

// Info describes a connector type to the registry.
type Info struct {
	Name  string // the "type:" value in the config
	Roles Role
	// New returns a zero connector for the loader to decode its config into.
	New func() Connector
	// Sample is the embedded sample config: one connector section, the same
	// text its README shows. Tests decode and validate it.
	Sample []byte
	// Summary is one line for `ferry help` style listings.
	Summary string
	// Local marks a sink whose far side is on this machine (a file): it
	// crosses no link, so it has no ferry_link_up. A sink that is also a
	// service (the embedded broker) delivers in-process and is local
	// without saying so.
	Local bool
}

// CrossesLink reports a sink that delivers across a link that can go
// down: the sinks that export ferry_link_up.
func (i Info) CrossesLink() bool {
	return i.Roles&RoleSink != 0 && i.Roles&RoleService == 0 && !i.Local
}

var (
	regMu    sync.RWMutex
	registry = map[string]Info{}
)

// Register adds a connector type. It is meant for init functions and panics
// on programming errors (an empty name, a nil New, a duplicate), because a
// binary with a broken registry must not start.
func Register(info Info) {
	if info.Name == "" {
		panic("connectors: Register with an empty name")
	}
	if info.New == nil {
		panic("connectors: Register " + info.Name + " with a nil New")
	}
	if info.Roles == 0 {
		panic("connectors: Register " + info.Name + " with no role")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[info.Name]; dup {
		panic("connectors: Register called twice for " + info.Name)
	}
	registry[info.Name] = info
}

// Lookup returns the registered type name.
func Lookup(name string) (Info, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	info, ok := registry[name]
	return info, ok
}

// Names lists the registered types, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// UnknownTypeError names the types that exist.
func UnknownTypeError(name string) error {
	return fmt.Errorf("unknown connector type %q; registered types are %v", name, Names())
}
