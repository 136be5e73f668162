package virtqueue

import (
	"testing"
)

// SST request and response sizes (docs/sst-protocol.md §Sizes and byte order: SSTRequest 4104 bytes, SSTResponse 4112).
const (
	sstRequestBytes  = 4104
	sstResponseBytes = 4112
)

// BenchmarkRoundTrip measures one chain's full trip: Add, Publish, Pop, Gather, Scatter,
// PushUsed, NeedsInterrupt, PopUsed.
func BenchmarkRoundTrip(b *testing.B) {
	sizes := []struct {
		name     string
		req, rsp uint32
	}{
		{"8B", 8, 8},
		{"sst", sstRequestBytes, sstResponseBytes},
	}
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			p := newPair(b, 1<<20, sstQueueSize, Features{EventIdx: true})
			req, rsp := p.alloc(b, uint64(sz.req)), p.alloc(b, uint64(sz.rsp))
			bufs := []Buffer{{Addr: req, Len: sz.req}, {Addr: rsp, Len: sz.rsp, Writable: true}}
			in := make([]byte, sz.req)
			out := make([]byte, sz.rsp)
			b.SetBytes(int64(sz.req) + int64(sz.rsp))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.drv.Add(bufs); err != nil {
					b.Fatal(err)
				}
				if _, err := p.drv.Publish(); err != nil {
					b.Fatal(err)
				}
				c, ok, err := p.dev.Pop()
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
				if _, err := c.Gather(in); err != nil {
					b.Fatal(err)
				}
				n, err := c.Scatter(out)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.dev.PushUsed(c.Head, uint32(n)); err != nil {
					b.Fatal(err)
				}
				p.dev.NeedsInterrupt()
				if _, ok, err := p.drv.PopUsed(); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkGuestMemory measures one 16-bit ring-index access (an atomic load, or a
// load and compare-and-swap of its 32-bit word), alone and with every P reading at once.
func BenchmarkGuestMemory(b *testing.B) {
	m := NewGuestMemory(4096)
	b.Run("ReadU16", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.ReadU16(2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("WriteU16", func(b *testing.B) {
		for b.Loop() {
			if err := m.WriteU16(2, 7); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadU16Parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.ReadU16(2); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
