package opcua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/command"
)

// poll reads every item each interval in Read calls of at most
// MaxNodesPerRead nodes, and emits one batch per cycle. A server that
// refuses a call as too large (BadTooManyOperations despite its stated
// limit) gets calls half the size.
func (s *session) poll(ctx context.Context) error {
	per := chunk(s.limits.maxNodesPerRead, s.o.Poll.MaxNodesPerRead)
	interval := s.o.Poll.Interval.D()
	maxAge := float64(s.o.Poll.MaxAge.D()) / float64(time.Millisecond)
	s.o.env.Up()
	s.o.env.Logger.Info("polling", "items", len(s.items), "interval", interval, "nodes_per_read", per)
	t := time.NewTicker(interval)
	defer t.Stop()
	failed := 0 // cycles in a row in which every Read failed
	for {
		b := &s.batch
		b.Reset()
		calls, errs := 0, 0
		var lastErr error
		for start := 0; start < len(s.items); {
			part := s.items[start:min(start+per, len(s.items))]
			req := &ua.ReadRequest{MaxAge: maxAge, TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: make([]*ua.ReadValueID, len(part))}
			for i, it := range part {
				req.NodesToRead[i] = &ua.ReadValueID{NodeID: it.node, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}
			}
			res, err := call[*ua.ReadResponse](ctx, s, req)
			s.o.st.reads.Add(1)
			if errors.Is(err, ua.StatusBadTooManyOperations) && per > 1 {
				per /= 2
				s.o.env.Logger.Warn("server refused a read as too large; reading fewer nodes per call", "nodes_per_read", per)
				continue
			}
			calls++
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if fatal(err) {
				return fmt.Errorf("read: %w", err)
			}
			if err != nil {
				// One call refused or timed out: its nodes are BAD this
				// cycle; the session is replaced only if whole cycles fail.
				errs++
				lastErr = err
				code := ua.StatusBadCommunicationError
				var sc ua.StatusCode
				if errors.As(err, &sc) {
					code = sc
				}
				now := time.Now().UnixNano()
				for _, it := range part {
					b.Records = append(b.Records, bus.Record{Device: s.o.device, Tag: it.tag, Unit: it.unit, Quality: bus.Bad, Status: uint32(code), SourceTime: now, IngestTime: now})
				}
				start += len(part)
				continue
			}
			ingest := time.Now().UnixNano()
			for i, it := range part {
				var dv *ua.DataValue
				if i < len(res.Results) {
					dv = res.Results[i]
				}
				b.Records = append(b.Records, s.record(it, dv, ingest))
			}
			start += len(part)
		}
		if errs > 0 && errs == calls {
			if failed++; failed >= 2 {
				return fmt.Errorf("read: every call failed in %d cycles: %w", failed, lastErr)
			}
		} else {
			failed = 0
		}
		if len(b.Records) > 0 {
			if err := s.o.env.Emit(ctx, b); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.o.env.Error(err)
			} else {
				s.delivered.Store(true)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// nodeType is what a write needs to know about a node.
type nodeType struct {
	dataType *ua.NodeID
	rank     int32
}

// write converts v to the node's data type and writes it; the node's
// StatusCode for the write is the result.
func (s *session) write(ctx context.Context, it *item, v bus.Value) error {
	nt, err := s.nodeType(ctx, it)
	if err != nil {
		return err
	}
	va, err := toVariant(nt.dataType, nt.rank, v)
	if err != nil {
		// Nothing was sent: the command is refused, not failed.
		return fmt.Errorf("%s/%s (%s): %w: %w", s.o.device, it.tag, it.node, command.ErrRefused, err)
	}
	res, err := call[*ua.WriteResponse](ctx, s, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: it.node, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: va},
	}}})
	if err != nil {
		return fmt.Errorf("write %s/%s (%s): %w", s.o.device, it.tag, it.node, err)
	}
	if len(res.Results) != 1 {
		return fmt.Errorf("write %s/%s (%s): %d results for one node", s.o.device, it.tag, it.node, len(res.Results))
	}
	if code := res.Results[0]; Quality(code) != bus.Good {
		return &StatusError{Op: "write", Node: it.node.String(), Tag: s.o.device + "/" + it.tag, Code: code}
	}
	return nil
}

// nodeType reads a node's DataType and ValueRank, once per session.
func (s *session) nodeType(ctx context.Context, it *item) (nodeType, error) {
	key := it.node.String()
	s.typesMu.Lock()
	nt, ok := s.types[key]
	s.typesMu.Unlock()
	if ok {
		return nt, nil
	}
	res, err := call[*ua.ReadResponse](ctx, s, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: it.node, AttributeID: ua.AttributeIDDataType, DataEncoding: &ua.QualifiedName{}},
		{NodeID: it.node, AttributeID: ua.AttributeIDValueRank, DataEncoding: &ua.QualifiedName{}},
	}})
	if err != nil {
		return nt, fmt.Errorf("read data type of %s/%s (%s): %w", s.o.device, it.tag, it.node, err)
	}
	if len(res.Results) != 2 || res.Results[0] == nil || res.Results[0].Value == nil {
		code := ua.StatusBadAttributeIDInvalid
		if len(res.Results) > 0 && res.Results[0] != nil && res.Results[0].Status != ua.StatusOK {
			code = res.Results[0].Status
		}
		return nt, &StatusError{Op: "read data type of", Node: key, Tag: s.o.device + "/" + it.tag, Code: code}
	}
	switch x := res.Results[0].Value.Value().(type) {
	case *ua.NodeID:
		nt.dataType = x
	case *ua.ExpandedNodeID:
		nt.dataType = x.NodeID
	default:
		return nt, fmt.Errorf("read data type of %s/%s: unexpected %T", s.o.device, it.tag, x)
	}
	nt.rank = -1
	if dv := res.Results[1]; dv != nil && dv.Value != nil {
		if r, ok := dv.Value.Value().(int32); ok {
			nt.rank = r
		}
	}
	s.typesMu.Lock()
	s.types[key] = nt
	s.typesMu.Unlock()
	return nt, nil
}
