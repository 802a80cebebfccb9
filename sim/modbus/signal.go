package modbus

import (
	"fmt"
	"math"
	"time"
)

type signalKey struct {
	unit uint8
	area Area
	addr uint16
	bit  uint8
}

type signal struct {
	unit  *Unit
	spec  RegisterSpec // defaults applied; spec.Signal != nil
	ticks uint64
}

// value is the signal's value after s.ticks ticks of length tick.
func (s *signal) value(tick time.Duration) float64 {
	g := s.spec.Signal
	switch g.Kind {
	case Counter:
		return g.Value + g.Step*float64(s.ticks)
	case Sine:
		phase := 2 * math.Pi * float64(s.ticks) * float64(tick) / float64(g.Period)
		return g.Offset + g.Amplitude*math.Sin(phase)
	}
	return g.Value
}

func (s *signal) boolValue(tick time.Duration) bool {
	g := s.spec.Signal
	switch g.Kind {
	case Counter:
		return int64(math.Round(s.value(tick)))%2 != 0
	case Sine:
		return s.value(tick) > g.Offset
	}
	return g.Value != 0
}

// write stores the signal's current value in the bank.
func (s *signal) write(tick time.Duration) {
	r := s.spec
	switch r.Type {
	case Bool:
		s.unit.Bits(r.Area).Set(r.Address, s.boolValue(tick))
	case Bit:
		s.unit.Registers(r.Area).SetBit(r.Address, r.Bit, s.boolValue(tick))
	default:
		s.unit.Registers(r.Area).setRaw(r.Address, r.Type, wrapRaw(r.Type, s.value(tick)), r.Order)
	}
}

// Apply puts spec into the bank of unit (creating the unit if needed): a
// fixed Value is written once; a Signal is written now and then on every
// tick. Applying a spec at the address (and bit) of an existing signal
// replaces that signal, so a fixed value stops it. It is what Start does
// for every register in Config.Units.
func (s *Server) Apply(unit uint8, spec RegisterSpec) error {
	spec.setDefaults()
	var problems []error
	validateSpec(fmt.Sprintf("unit %d %s %d", unit, spec.Area, spec.Address), spec, func(path, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %w: %s", path, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	})
	if len(problems) > 0 {
		return problems[0]
	}
	u := s.Unit(unit)
	key := signalKey{unit, spec.Area, spec.Address, spec.Bit}

	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	delete(s.signals, key)
	if spec.Signal != nil {
		sig := &signal{unit: u, spec: spec}
		sig.write(s.cfg.Tick)
		if spec.Signal.Kind != Static {
			s.signals[key] = sig
		}
		return nil
	}
	if spec.Value == nil {
		return nil
	}
	if spec.Type == Bool {
		u.Bits(spec.Area).Set(spec.Address, spec.Value.(bool)) // checked by validateSpec
		return nil
	}
	return u.Registers(spec.Area).SetValue(spec.Address, spec.Type, spec.Order, spec.Value, spec.Length, spec.Bit)
}

// UpdateSignals advances every signal by one tick and writes the new values,
// as the background ticker does every Config.Tick. Tests call it to step
// signals deterministically.
func (s *Server) UpdateSignals() {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	for _, sig := range s.signals {
		sig.ticks++
		sig.write(s.cfg.Tick)
	}
}

func (s *Server) runSignals() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.UpdateSignals()
		}
	}
}
