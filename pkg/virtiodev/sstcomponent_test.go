package virtiodev

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
)

// newComponent returns a real layer 5 with its defaults (the tutorial's A100-like
// roofline: 64 FLOP/cycle, 900 GB/s at 1.41 GHz), shut down at the end of the test.
func newComponent(t testing.TB) *sstcomponent.Component {
	t.Helper()
	c, err := sstcomponent.New(sstcomponent.Config{})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	return c
}

func gemmRequest(id uint64, m, n, k uint32) *protocol.Request {
	r := &protocol.Request{RequestID: id, UserData: id << 8}
	r.SetGEMM(protocol.GEMM{M: m, N: n, K: k, DtypeSize: 4})
	return r
}

// rooflineGEMM is the tutorial's roofline worked out in float64 from docs/models.md §Roofline for
// float32 operands, with flopsPerCycle FLOP per cycle.
func rooflineGEMM(m, n, k, flopsPerCycle float64) protocol.GEMMResult {
	flops := 2 * m * n * k
	bytes := (m*k + k*n + m*n) * 4
	compute := uint64(flops / flopsPerCycle)
	memory := uint64(bytes / (900.0 / 1.41))
	return protocol.GEMMResult{Cycles: max(compute, memory), ComputeCycles: compute, MemoryCycles: memory, MemoryBytes: uint64(bytes)}
}

// TestWithSSTComponent sends every request type through the ring and the device to the
// real in-process SST component. The expected answers are worked out by hand from
// docs/sst-protocol.md §The SST component and the component's documented rules; the simulated clock starts at 0 and
// advances by each COMPUTE's and GEMM's cycles.
func TestWithSSTComponent(t *testing.T) {
	comp := newComponent(t)
	h := newHarness(t, fastConfig(PipeDialer(comp.ServeConn)), harnessOpts{features: protocol.BaseFeatures})
	eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })

	data := []byte("the quick brown fox jumps over the lazy dog")
	write := &protocol.Request{RequestID: 3, UserData: 33}
	require.NoError(t, write.SetWrite(0x1000, data))
	read := &protocol.Request{RequestID: 4, UserData: 44}
	read.SetRead(0x1000, uint32(len(data)))
	readOutside := &protocol.Request{RequestID: 5}
	readOutside.SetRead(protocol.DeviceMemorySize-8, 16)
	configure := &protocol.Request{RequestID: 7}
	configure.SetConfigure(protocol.Configure{ParamID: 1, Value: 128}) // flops_per_cycle
	compute := func(id, units uint64, model uint32) *protocol.Request {
		r := &protocol.Request{RequestID: id, UserData: id + 1000}
		r.SetCompute(protocol.Compute{ComputeUnits: units, LatencyModel: model})
		return r
	}
	gemm64 := rooflineGEMM(64, 64, 64, 64)   // 8192 compute cycles, 77 memory cycles
	gemm128 := rooflineGEMM(64, 64, 64, 128) // after CONFIGURE: 4096 compute cycles
	batched := &protocol.Request{RequestID: 14, UserData: 1414}
	batched.SetBatchedGEMM(protocol.BatchedGEMM{M: 64, N: 64, K: 64, DtypeSize: 4, Batch: 3})

	tests := []struct {
		name  string
		req   *protocol.Request
		check func(t *testing.T, r protocol.Response)
	}{
		{"NOOP (device)", &protocol.Request{Type: protocol.ReqNoop, RequestID: 1}, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Zero(t, r.Result)
		}},
		{"COMPUTE at cycle 0", compute(2, 7, 0), func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(700), r.Result)
			assert.Equal(t, protocol.ComputeResult{Cycles: 700, Timestamp: 0}, r.Compute())
		}},
		{"WRITE", write, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(len(data)), r.Result)
		}},
		{"READ back", read, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(len(data)), r.Result)
			assert.Equal(t, data, r.Payload[:len(data)])
		}},
		{"READ outside device memory", readOutside, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusInvalid, r.Status)
		}},
		{"GEMM 64x64x64", gemmRequest(6, 64, 64, 64), func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(8192), gemm64.Cycles)
			assert.Equal(t, gemm64, r.GEMM())
			assert.Equal(t, gemm64.Cycles, r.Result)
		}},
		{"CONFIGURE flops_per_cycle=128", configure, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(128), r.Result)
		}},
		{"GEMM after CONFIGURE", gemmRequest(8, 64, 64, 64), func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(4096), gemm128.Cycles)
			assert.Equal(t, gemm128, r.GEMM())
		}},
		{"BATCHED_GEMM of 3 (the roofline: 3 × one GEMM)", batched, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			want := protocol.GEMMResult{Cycles: 3 * gemm128.Cycles, ComputeCycles: 3 * gemm128.ComputeCycles,
				MemoryCycles: 3 * gemm128.MemoryCycles, MemoryBytes: 3 * gemm128.MemoryBytes}
			assert.Equal(t, want, r.GEMM())
			assert.Equal(t, want.Cycles, r.Result)
		}},
		{"COMPUTE after the GEMMs (100 cycles a unit, whatever latency_model)", compute(9, 1, 3), func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.ComputeResult{Cycles: 100, Timestamp: 700 + 8192 + 4096 + 3*4096}, r.Compute())
		}},
		{"ECHO (device)", newRequest(protocol.ReqEcho, 10, 0), func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, newRequest(protocol.ReqEcho, 10, 0).Payload, r.Payload)
		}},
		{"GET_INFO (device)", &protocol.Request{Type: protocol.ReqGetInfo, RequestID: 11}, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.Info{Version: 0x00010000, Capabilities: 0b100111, MaxComputeUnits: 1000000, MemorySize: 0x10000000}, r.Info())
		}},
		{"RESET (device)", &protocol.Request{Type: protocol.ReqReset, RequestID: 12}, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusOK, r.Status)
		}},
		{"unknown type (device)", &protocol.Request{Type: 42, RequestID: 13}, func(t *testing.T, r protocol.Response) {
			assert.Equal(t, protocol.StatusInvalid, r.Status)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, n := h.do(tt.req)
			assert.Equal(t, uint32(protocol.ResponseSize), n)
			assert.Equal(t, tt.req.RequestID, resp.RequestID)
			assert.Equal(t, tt.req.UserData, resp.UserData)
			tt.check(t, resp)
		})
	}
	// Everything forwarded reached the component; nothing the device answers did.
	st := comp.Stats()
	assert.Equal(t, uint64(9), st.Total, "component saw %+v", st)
	assert.Equal(t, uint64(1), st.Requests[protocol.ReqBatchedGEMM])
	assert.Zero(t, st.Requests[protocol.ReqNoop]+st.Requests[protocol.ReqEcho]+st.Requests[protocol.ReqGetInfo]+st.Requests[protocol.ReqReset])
	assert.Equal(t, uint64(9), h.dev.Stats().Forwarded)
}

// TestSSTComponentUnixRestart serves the real component on a Unix socket, shuts it down
// and starts a new one on the same path: the device notices, answers NO_DEVICE promptly
// meanwhile and reconnects by itself.
func TestSSTComponentUnixRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sst.sock")
	start := func() *sstcomponent.Component {
		c := newComponent(t)
		l, err := sstcomponent.Listen(path)
		require.NoError(t, err)
		go func() { _ = c.Serve(l) }()
		return c
	}
	comp := start()
	h := newHarness(t, fastConfig(UnixDialer(path)), harnessOpts{})
	h.postEventBuffers(8, protocol.EventSize)
	assert.Equal(t, protocol.EventLinkUp, h.nextEvent().Type)

	gemm := rooflineGEMM(128, 32, 16, 64)
	resp, _ := h.do(gemmRequest(1, 128, 32, 16))
	assert.Equal(t, gemm, resp.GEMM())

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, comp.Shutdown(ctx))
	assert.Equal(t, protocol.EventLinkDown, h.nextEvent().Type)
	began := time.Now()
	resp, _ = h.do(gemmRequest(2, 128, 32, 16))
	assert.Less(t, time.Since(began), prompt)
	assert.Equal(t, protocol.StatusNoDevice, resp.Status)

	start()
	e := h.nextEvent()
	assert.Equal(t, protocol.EventLinkUp, e.Type)
	assert.Equal(t, uint64(2), e.Data)
	resp, _ = h.do(gemmRequest(3, 128, 32, 16))
	assert.Equal(t, protocol.StatusOK, resp.Status)
	assert.Equal(t, gemm, resp.GEMM())
}

func BenchmarkRoundTripSST(b *testing.B) {
	benchRoundTrips(b, PipeDialer(newComponent(b).ServeConn), false)
}

func BenchmarkRoundTripSSTParallel(b *testing.B) {
	benchRoundTrips(b, PipeDialer(newComponent(b).ServeConn), true)
}
