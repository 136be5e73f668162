package sstdev_test

import (
	"testing"

	"github.com/sstemu/sstemu/pkg/sstdev"
)

// benchParallelism × GOMAXPROCS goroutines write at once in the parallel benchmarks.
const benchParallelism = 32

// benchWriteRead sends b.N requests (write, then read) through this driver, the
// virtio-sst device and the real SST component: GEMM timing requests go through layers
// 3–5, ECHO requests only through layers 3–4 (the device answers them itself).
func benchWriteRead(b *testing.B, req []byte, parallel bool) {
	devs := newSST(b, 1)
	d := devs.Device(0)
	one := func(f *sstdev.File, buf []byte) {
		if _, err := f.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Read(buf); err != nil {
			b.Fatal(err)
		}
		if parseResponse(buf).status != statusOK {
			b.Fatalf("status %d", parseResponse(buf).status)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			f, err := d.Open()
			if err != nil {
				b.Error(err)
				return
			}
			defer f.Close()
			buf := make([]byte, respSize)
			for pb.Next() {
				one(f, buf)
			}
		})
	} else {
		f, err := d.Open()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, respSize)
		for b.Loop() {
			one(f, buf)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkWriteReadGEMM(b *testing.B) { benchWriteRead(b, gemmRequest(1, 64, 64, 64, 4), false) }

func BenchmarkWriteReadGEMMParallel(b *testing.B) {
	benchWriteRead(b, gemmRequest(1, 64, 64, 64, 4), true)
}

func BenchmarkWriteReadEcho(b *testing.B) { benchWriteRead(b, request(typeEcho, 0, 1), false) }

func BenchmarkWriteReadEchoParallel(b *testing.B) { benchWriteRead(b, request(typeEcho, 0, 1), true) }
