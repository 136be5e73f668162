package virtiodev

import (
	"testing"

	"github.com/sstemu/sstemu/internal/cputime"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// benchRoundTrips sends b.N GEMM requests through the ring, the device and dialer's
// layer 5, from `parallel` goroutines (0: the caller alone).
func benchRoundTrips(b *testing.B, d Dialer, parallel bool) {
	h := newHarness(b, fastConfig(d), harnessOpts{})
	eventually(b, "link up", func() bool { return h.dev.Stats().LinkUp })
	req := newRequest(protocol.ReqGEMM, 1, 2)
	req.SetGEMM(protocol.GEMM{M: 64, N: 64, K: 64, DtypeSize: 4})
	enc, err := req.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	one := func() {
		p := <-h.pairs
		if err := h.mem.WriteAt(enc, p.reqAddr); err != nil {
			b.Fatal(err)
		}
		u := h.wait(h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize},
			{Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}}))
		if u.Len != protocol.ResponseSize {
			b.Fatalf("used len %d", u.Len)
		}
		h.pairs <- p
	}
	b.ReportAllocs()
	cpu0 := cputime.Of(b)
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	} else {
		for b.Loop() {
			one()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cputime.Of(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if st := h.dev.Stats(); st.NoDevice != 0 || st.Errors != 0 {
		b.Fatalf("stats %+v", st)
	}
}

func BenchmarkRoundTripFake(b *testing.B) { benchRoundTrips(b, newFakeSST().dialer(), false) }

func BenchmarkRoundTripFakeParallel(b *testing.B) { benchRoundTrips(b, newFakeSST().dialer(), true) }
