package deviceserver_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// timingCallers is how many goroutines ask for timings at once in the parallel benchmark
// (at least; b.SetParallelism counts in multiples of GOMAXPROCS).
const timingCallers = 64

// linkUpWait bounds the wait for the in-process link from layer 4 to layer 5.
const linkUpWait = 5 * time.Second

// benchShape is the small op of the reference client (protocol.md's example), 4×16×8.
var benchShape = []linalg.GEMMShape{{M: 4, N: 16, K: 8}}

// newTimingStack wires layers 2–5 in-process exactly as `sstemu serve` does with one
// device: the SST component (L5) behind virtiodev.PipeDialer, one virtio-sst device (L4),
// /dev/sst0 bound to it (L3) and the device server (L2) opening handles on it.
func newTimingStack(b *testing.B) *deviceserver.Server {
	b.Helper()
	comp, err := sstcomponent.New(sstcomponent.Config{})
	if err != nil {
		b.Fatal(err)
	}
	vdev, err := virtiodev.New(virtiodev.Config{Dialer: virtiodev.PipeDialer(comp.ServeConn)})
	if err != nil {
		b.Fatal(err)
	}
	devs, err := sstdev.NewDevices(1, sstdev.Config{}, func(int) (sstdev.Backend, error) { return vdev, nil })
	if err != nil {
		vdev.Close()
		b.Fatal(err)
	}
	// The link to layer 5 comes up asynchronously; until then the device answers NO_DEVICE.
	for deadline := time.Now().Add(linkUpWait); !vdev.Stats().LinkUp; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("virtio-sst link to the SST component not up within %v", linkUpWait)
		}
	}
	d := devs.Device(0)
	srv := deviceserver.New(deviceserver.Config{
		Devices: []deviceserver.Opener{func() (deviceserver.DeviceFile, error) { return d.Open() }},
	})
	b.Cleanup(func() {
		_ = srv.Close()
		_ = devs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = comp.Shutdown(ctx)
	})
	return srv
}

// checkTimed fails the benchmark unless t is a real answer from the device's model.
func checkTimed(b *testing.B, t deviceserver.Timing) {
	if !t.Timed || t.Requests != 1 || t.Cycles == 0 {
		b.Fatalf("timing %+v: want one timed request with cycles", t)
	}
}

// BenchmarkTimingLayers2to5 is target (7): GEMM timing requests alone (no numerics)
// through the device server, /dev/sst0, the virtio-sst device and the SST component, from
// timingCallers goroutines at once on one device. Reports req/s.
func BenchmarkTimingLayers2to5(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	checkTimed(b, srv.Time(ctx, benchShape)) // link up, one handle open
	b.ReportAllocs()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((timingCallers + procs - 1) / procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if t := srv.Time(ctx, benchShape); !t.Timed {
				b.Errorf("untimed: %s", t.UntimedReason)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkTimingLayers2to5Serial is the same with one caller: the latency of one timing
// request through the four layers.
func BenchmarkTimingLayers2to5Serial(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	checkTimed(b, srv.Time(ctx, benchShape))
	b.ReportAllocs()
	for b.Loop() {
		if t := srv.Time(ctx, benchShape); !t.Timed {
			b.Fatalf("untimed: %s", t.UntimedReason)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
