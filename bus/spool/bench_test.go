package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/internal/conf"
)

const benchBatch = 500 // records per message, as a poll cycle of a busy source

func benchConfig(b *testing.B, policy string) Config {
	return Config{Dir: filepath.Join(b.TempDir(), "spool"), Fsync: policy, Quota: conf.Size(64 << 30)}
}

// newBatchMsg makes a bus message carrying proto's batch under a new UUID,
// as the router would publish it.
func newBatchMsg(proto *message.Message) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), proto.Payload)
	m.Metadata = message.Metadata{}
	for k, v := range proto.Metadata {
		m.Metadata[k] = v
	}
	m.Metadata.Set(MetaPriority, "0")
	return m
}

// BenchmarkFsync measures this machine's fsync latency: a 4KiB write and
// an fsync per op.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/fsync")
}

// BenchmarkAppend publishes 500-record batches from several publishers.
// One op is one Publish.
func BenchmarkAppend(b *testing.B) {
	proto := batchMsg(benchBatch, 0)
	for _, policy := range []string{FsyncNever, FsyncInterval, FsyncAlways} {
		for _, pubs := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("fsync=%s/publishers=%d", policy, pubs), func(b *testing.B) {
				s, err := Open(benchConfig(b, policy), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				b.SetBytes(int64(len(proto.Payload)))
				b.ResetTimer()
				var wg sync.WaitGroup
				per := (b.N + pubs - 1) / pubs
				for range pubs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if err := s.Publish("uplink", newBatchMsg(proto)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				sec := b.Elapsed().Seconds()
				b.ReportMetric(float64(per*pubs*benchBatch)/sec, "records/s")
				if n := s.st.fsyncs.Load(); n > 0 {
					b.ReportMetric(float64(per*pubs*benchBatch)/float64(n), "records/fsync")
				}
			})
		}
	}
}

// BenchmarkDrain drains a backlog of b.N 500-record batches through one
// subscription with a window of 64, acking each message.
func BenchmarkDrain(b *testing.B) {
	proto := batchMsg(benchBatch, 0)
	cfg := benchConfig(b, FsyncInterval)
	cfg.Window = 64
	s, err := Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for range b.N {
		if err := s.Publish("uplink", newBatchMsg(proto)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(proto.Payload)))
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Subscribe(ctx, "uplink")
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		(<-ch).Ack()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkBacklogMemory reports the heap in use with a backlog of records
// waiting, while the spool that wrote it is open and after a reopen. The
// records=0 case has carried 1,000,000 records and drained them, so that
// it holds the same buffers as the others. Run it with -benchtime=1x.
func BenchmarkBacklogMemory(b *testing.B) {
	proto := batchMsg(benchBatch, 0)
	for _, records := range []int{0, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("records=%d", records), func(b *testing.B) {
			for b.Loop() {
				cfg := benchConfig(b, FsyncNever)
				s, err := Open(cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				n := max(records, 1_000_000) / benchBatch
				for range n {
					if err := s.Publish("uplink", newBatchMsg(proto)); err != nil {
						b.Fatal(err)
					}
				}
				if records == 0 {
					ctx, cancel := context.WithCancel(context.Background())
					ch, _ := s.Subscribe(ctx, "uplink")
					for range n {
						(<-ch).Ack()
					}
					cancel()
					for range ch {
					}
				}
				written := heapInUse()
				if got := s.Stats().Records; got != int64(records) {
					b.Fatalf("%d records wait, want %d", got, records)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				s, err = Open(cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				if got := s.Stats().Records; got != int64(records) {
					b.Fatalf("%d records wait after reopen, want %d", got, records)
				}
				reopened := heapInUse()
				_ = s.Close()
				b.ReportMetric(float64(written)/(1<<20), "heap-MiB-written")
				b.ReportMetric(float64(reopened)/(1<<20), "heap-MiB-reopened")
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
