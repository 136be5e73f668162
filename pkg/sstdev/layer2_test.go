package sstdev_test

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstdev"
)

// A File serves wherever an *os.File on the real device does.
var _ io.ReadWriteCloser = (*sstdev.File)(nil)

// opener adapts a Device to layer 2's Opener.
func opener(d *sstdev.Device) deviceserver.Opener {
	return func() (deviceserver.DeviceFile, error) {
		f, err := d.Open()
		if err != nil {
			return nil, err
		}
		return f, nil
	}
}

// TestUnderLayer2 runs layer 2 over two emulated devices and the real layer 5: each op's
// numbers come from the host, its timing from the device. C = A·B with A all ones (4×8)
// and B all twos (8×16) is 8·1·2 = 16 everywhere; the tutorial roofline gives 16 cycles
// (16 compute, 1 memory, 896 bytes) per 4×16×8 GEMM.
func TestUnderLayer2(t *testing.T) {
	const callers, opsPerCaller = 16, 10
	devs := newSST(t, 2)
	srv := deviceserver.New(deviceserver.Config{Devices: []deviceserver.Opener{
		opener(devs.Device(0)), opener(devs.Device(1)),
	}})
	t.Cleanup(func() { _ = srv.Close() })

	a, b := make([]float32, 4*8), make([]float32, 8*16)
	for i := range a {
		a[i] = 1
	}
	for i := range b {
		b[i] = 2
	}
	var wg sync.WaitGroup
	results := make(chan *deviceserver.Result, callers*opsPerCaller)
	for c := range callers {
		wg.Go(func() {
			for k := range opsPerCaller {
				op := &deviceserver.Op{ID: int64(c*opsPerCaller + k), Type: deviceserver.OpGEMM,
					GEMM: &deviceserver.GEMM{M: 4, N: 16, K: 8, A: a, B: b}}
				res, err := srv.Execute(context.Background(), op)
				if !assert.NoError(t, err) {
					return
				}
				results <- res
			}
		})
	}
	wg.Wait()
	close(results)
	n := 0
	for res := range results {
		n++
		require.True(t, res.Timing.Timed, res.Timing.UntimedErr)
		assert.Equal(t, deviceserver.Timing{Timed: true, Requests: 1, Kind: protocol.ReqGEMM, Cycles: 16, ComputeCycles: 16,
			MemoryCycles: 1, MemoryBytes: 896}, res.Timing)
		assert.Equal(t, []int{4, 16}, res.Shape)
		for _, v := range res.Data {
			require.Equal(t, float32(16), v)
		}
	}
	assert.Equal(t, callers*opsPerCaller, n)
	var answers int64
	for _, st := range devs.Stats() {
		answers += st.Answers
		assert.Positive(t, st.Answers, "both devices time ops")
	}
	assert.Equal(t, int64(callers*opsPerCaller), answers)
}
