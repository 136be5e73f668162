package sstdev_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/stack"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// tutorial is the real layer 5's model with the tutorial's A100-like roofline: 64 FP32
// FLOP per cycle, 900 GB/s at 1.41 GHz.
var tutorial = stack.Options{
	Model:  perfmodel.KindRoofline,
	Params: perfmodel.Params{FLOPsPerCycle: 64, BandwidthGBps: 900, ClockGHz: 1.41},
}

// newSST builds the in-process stack with n devices, each on its own virtio-sst device
// linked to the real layer 5, and waits until every device's link is up.
func newSST(t testing.TB, n int) *sstdev.Devices {
	t.Helper()
	opts := tutorial
	opts.Devices = n
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	st, err := stack.Build(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Ready(ctx))
	return st.Devices()
}

// GEMM payload offsets of an SSTResponse, relative to its payload (docs/sst-protocol.md §GEMM payload).
const (
	gemmCycles, gemmCompute, gemmMemory, gemmBytes = 0, 8, 16, 24
)

// TestGEMMThroughLayers3To5 sends the tutorial's 4×16×8 float32 GEMM to several devices
// at once, each through its own layer 4 and the real layer 5. By hand: flops = 2·4·16·8 =
// 1024, compute = 1024/64 = 16 cycles; bytes = (4·8 + 8·16 + 4·16)·4 = 896, memory =
// floor(896 / (900/1.41)) = floor(1.40…) = 1 cycle; cycles = max = 16.
func TestGEMMThroughLayers3To5(t *testing.T) {
	const devices, perDevice = 4, 3
	devs := newSST(t, devices)
	require.Equal(t, devices, devs.Len())

	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i := range devices {
		f, err := devs.Open(fmt.Sprintf("/dev/sst%d", i))
		require.NoError(t, err)
		t.Cleanup(func() { _ = f.Close() })
		wg.Go(func() {
			buf := make([]byte, respSize)
			for k := range perDevice {
				user := uint64(i*100 + k)
				if _, err := f.Write(gemmRequest(user, 4, 16, 8, 4)); err != nil {
					errs <- err
					return
				}
				if _, err := f.Read(buf); err != nil {
					errs <- err
					return
				}
				r := parseResponse(buf)
				got := [...]uint64{uint64(r.status), r.requestID, r.user, r.result,
					le.Uint64(r.payload[gemmCycles:]), le.Uint64(r.payload[gemmCompute:]),
					le.Uint64(r.payload[gemmMemory:]), le.Uint64(r.payload[gemmBytes:])}
				want := [...]uint64{statusOK, uint64(k + 1), user, 16, 16, 16, 1, 896}
				if got != want {
					errs <- fmt.Errorf("/dev/sst%d request %d: status, id, user, result, cycles, compute, memory, bytes = %v, want %v",
						i, k, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, st := range devs.Stats() {
		assert.Equal(t, int64(perDevice), st.Answers)
		assert.Equal(t, sstdev.NumSlots, st.FreeSlots)
	}
}

func TestDevicesLookup(t *testing.T) {
	devs := newSST(t, 2)
	for _, tc := range []struct {
		name  string
		index int // -1: none
	}{
		{"/dev/sst0", 0}, {"sst1", 1}, {"/dev/sst2", -1}, {"sst01", -1}, {"/dev/sst", -1},
		{"/dev/null", -1}, {"sst-1", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := devs.Lookup(tc.name)
			if tc.index < 0 {
				assert.False(t, ok)
				_, err := devs.Open(tc.name)
				requireErrno(t, err, "open", tc.name, syscall.ENOENT)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.index, d.Index())
			assert.Same(t, d, devs.Device(tc.index))
		})
	}
	assert.Nil(t, devs.Device(2))
	assert.Nil(t, devs.Device(-1))
}

func TestNewDevicesBackendError(t *testing.T) {
	var made []*virtiodev.Device
	_, err := sstdev.NewDevices(3, sstdev.Config{}, func(i int) (sstdev.Backend, error) {
		if i == 2 {
			return nil, fmt.Errorf("no backend %d", i)
		}
		var l5 fakeL5
		b := newBackend(t, l5.serve)
		made = append(made, b)
		return b, nil
	})
	require.ErrorContains(t, err, "no backend 2")
	for _, b := range made {
		assert.ErrorIs(t, b.AckFeatures(0), virtiodev.ErrClosed, "the backends of a failed set are closed")
	}
}
