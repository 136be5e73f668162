package deviceserver

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/syncbuffer"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// layer5Device stands in for layers 3–5 with the answers of a real SST component: COMPUTE
// at 100 cycles a unit, and GEMM (cycles M·N·K + 7) only while knowsGEMM. Its handles
// report the link generation gen, or none with noGen.
type layer5Device struct {
	knowsGEMM atomic.Bool
	noDevice  atomic.Bool // answer NO_DEVICE, as a device without its SST
	gen       atomic.Uint64
	noGen     bool
	gemms     atomic.Int64
	computes  atomic.Int64
	lists     atomic.Int64 // GEMM_LISTs received (answered INVALID: the tutorial's component)
}

func (d *layer5Device) open() (DeviceFile, error) {
	f := &layer5File{dev: d}
	if d.noGen {
		return plainFile{f}, nil
	}
	return f, nil
}

type layer5File struct {
	dev *layer5Device
	storedAnswer
}

// plainFile hides LinkGeneration, as *os.File does.
type plainFile struct{ f *layer5File }

func (p plainFile) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p plainFile) Read(b []byte) (int, error)  { return p.f.Read(b) }
func (p plainFile) Close() error                { return nil }

func (f *layer5File) LinkGeneration() uint64 { return f.dev.gen.Load() }

func (f *layer5File) Write(p []byte) (int, error) {
	if len(p) < protocol.RequestSize {
		return 0, syscall.EINVAL
	}
	var req protocol.Request
	if err := req.Decode(p[:protocol.RequestSize]); err != nil {
		return 0, err
	}
	var resp protocol.Response
	resp.ReplyTo(&req)
	switch {
	case f.dev.noDevice.Load():
		resp.Status = protocol.StatusNoDevice
	case req.Type == protocol.ReqCompute:
		f.dev.computes.Add(1)
		c := req.Compute()
		resp.SetCompute(protocol.ComputeResult{Cycles: 100 * c.ComputeUnits})
		resp.Result = 100 * c.ComputeUnits
	case req.Type == protocol.ReqGEMMList:
		f.dev.lists.Add(1)
		resp.Status = protocol.StatusInvalid
	case req.Type == protocol.ReqGEMM && f.dev.knowsGEMM.Load():
		f.dev.gemms.Add(1)
		g := req.GEMM()
		cycles := uint64(g.M)*uint64(g.N)*uint64(g.K) + 7
		resp.SetGEMM(protocol.GEMMResult{Cycles: cycles, ComputeCycles: cycles, MemoryCycles: 1, MemoryBytes: 2})
	default:
		resp.Status = protocol.StatusInvalid
	}
	f.stored, _ = resp.MarshalBinary()
	return protocol.RequestSize, nil
}

func (f *layer5File) Close() error { return nil }

// logBuffer is a goroutine-safe log sink.
type logBuffer struct{ syncbuffer.Buffer }

// count returns how many times s occurs in the log so far.
func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func gemmOp(m, n, k int) *Op {
	return &Op{Type: OpGEMM, GEMM: &GEMM{M: m, N: n, K: k, A: make([]float32, m*k), B: make([]float32, k*n)}}
}

const fallbackMsg = "the device does not know GEMM"

// TestComputeFallback: against a layer 5 that refuses GEMM, the first op is timed all the
// same with the reference device server's COMPUTE (2·M·N·K units at 100 cycles), the switch
// is logged once at info even when 16 ops find out at once, and every later op sends
// COMPUTE alone.
func TestComputeFallback(t *testing.T) {
	dev := &layer5Device{}
	var logs logBuffer
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	defer s.Close()

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			res, err := s.Execute(context.Background(), gemmOp(4, 16, 8))
			require.NoError(t, err)
			assert.True(t, res.Timing.Timed, "the op that finds out is timed too")
			assert.Equal(t, uint64(100*2*4*16*8), res.Timing.Cycles)
			assert.Equal(t, uint64(100*2*4*16*8), res.Timing.ComputeCycles)
			assert.Zero(t, res.Timing.MemoryBytes, "COMPUTE says nothing of memory")
			assert.Equal(t, protocol.ReqCompute, res.Timing.Kind)
			assert.Equal(t, 1, res.Timing.ComputeRequests)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, logs.count(fallbackMsg), "logged once: %s", logs.String())
	assert.Equal(t, 1, logs.count(`"level":"info"`))
	refused := s.Stats().TimingRequest - 16 // the GEMMs refused before the switch

	res, err := s.Execute(context.Background(), gemmOp(2, 3, 5))
	require.NoError(t, err)
	assert.Equal(t, 1, res.Timing.Requests, "COMPUTE alone once decided")
	assert.Equal(t, uint64(100*2*2*3*5), res.Timing.Cycles)

	st := s.Stats()
	assert.Equal(t, uint64(17), st.Timed)
	assert.Zero(t, st.Untimed)
	assert.Equal(t, []string{"compute"}, st.TimingModes)
	assert.Equal(t, uint64(1), st.ComputeFallbacks)
	assert.Equal(t, uint64(17), st.ComputeTimingRequests)
	assert.Equal(t, 17+refused, st.TimingRequest, "refused GEMMs count as requests")
	assert.GreaterOrEqual(t, refused, uint64(1))
	assert.Zero(t, dev.gemms.Load())
	assert.Equal(t, int64(17), dev.computes.Load())
}

// TestComputeFallbackWholeOp: an op of several GEMMs is timed with one kind of request:
// the refusal of its first GEMM times all of them with COMPUTE.
func TestComputeFallbackWholeOp(t *testing.T) {
	dev := &layer5Device{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	shapes := []linalg.GEMMShape{{M: 2, N: 2, K: 2}, {M: 2, N: 2, K: 2}, {M: 3, N: 1, K: 4}}
	tm := s.Time(context.Background(), shapes)
	require.True(t, tm.Timed)
	assert.Equal(t, uint64(100*(2*2*2*2*2+2*3*1*4)), tm.Cycles)
	assert.Equal(t, 4, tm.Requests, "the refused BATCHED_GEMM of the first two, the refused GEMM, one COMPUTE per batch")
	assert.Equal(t, 2, tm.ComputeRequests)
}

func TestTimingRequestModes(t *testing.T) {
	t.Run("gemm: a device that refuses GEMM leaves ops untimed, its answers counted", func(t *testing.T) {
		dev := &layer5Device{}
		s := New(Config{Devices: []Opener{dev.open}, TimingRequest: TimingGEMM, Logger: zerolog.Nop()})
		defer s.Close()
		for range 2 {
			res, err := s.Execute(context.Background(), gemmOp(4, 16, 8))
			require.NoError(t, err)
			assert.False(t, res.Timing.Timed)
			assert.Equal(t, UntimedDeviceError, res.Timing.Untimed)
			assert.Contains(t, res.Timing.UntimedErr.Error(), "INVALID")
		}
		st := s.Stats()
		assert.Equal(t, uint64(2), st.TimingRequest)
		assert.Equal(t, uint64(2), st.UntimedByCause[UntimedDeviceError])
		assert.Equal(t, []string{"gemm"}, st.TimingModes)
		assert.Zero(t, st.ComputeFallbacks)
	})
	t.Run("compute: COMPUTE even where GEMM is known", func(t *testing.T) {
		dev := &layer5Device{}
		dev.knowsGEMM.Store(true)
		s := New(Config{Devices: []Opener{dev.open}, TimingRequest: TimingCompute, Logger: zerolog.Nop()})
		defer s.Close()
		res, err := s.Execute(context.Background(), gemmOp(4, 16, 8))
		require.NoError(t, err)
		assert.Equal(t, uint64(102400), res.Timing.Cycles)
		assert.Equal(t, protocol.ReqCompute, res.Timing.Kind)
		assert.Zero(t, dev.gemms.Load())
		assert.Equal(t, []string{"compute"}, s.Stats().TimingModes)
	})
	t.Run("auto: GEMM where it is known", func(t *testing.T) {
		dev := &layer5Device{}
		dev.knowsGEMM.Store(true)
		s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
		defer s.Close()
		res, err := s.Execute(context.Background(), gemmOp(4, 16, 8))
		require.NoError(t, err)
		assert.Equal(t, uint64(4*16*8+7), res.Timing.Cycles)
		assert.Equal(t, protocol.ReqGEMM, res.Timing.Kind)
		assert.Equal(t, 1, res.Timing.Requests)
		assert.Equal(t, []string{"gemm"}, s.Stats().TimingModes)
	})
}

// TestComputeFallbackRedecided: when the link to layer 5 is re-established, the device may
// be another SST: the server tries GEMM again, through the file's link generation, or
// after a NO_DEVICE answer on a file that reports none.
func TestComputeFallbackRedecided(t *testing.T) {
	for _, noGen := range []bool{false, true} {
		name := map[bool]string{false: "link generation", true: "NO_DEVICE answer"}[noGen]
		t.Run(name, func(t *testing.T) {
			dev := &layer5Device{noGen: noGen}
			dev.gen.Store(1)
			var logs logBuffer
			s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)})
			defer s.Close()
			res, err := s.Execute(context.Background(), gemmOp(4, 16, 8))
			require.NoError(t, err)
			require.Equal(t, protocol.ReqCompute, res.Timing.Kind)

			// The shipped SST goes, the tutorial's comes.
			if noGen {
				dev.noDevice.Store(true)
				res, err = s.Execute(context.Background(), gemmOp(4, 16, 8))
				require.NoError(t, err)
				assert.Equal(t, UntimedLinkDown, res.Timing.Untimed)
				dev.noDevice.Store(false)
			} else {
				dev.gen.Store(2)
			}
			dev.knowsGEMM.Store(true)
			res, err = s.Execute(context.Background(), gemmOp(4, 16, 8))
			require.NoError(t, err)
			assert.True(t, res.Timing.Timed)
			assert.Equal(t, protocol.ReqGEMM, res.Timing.Kind)
			assert.Equal(t, uint64(4*16*8+7), res.Timing.Cycles)
			assert.Equal(t, []string{"gemm"}, s.Stats().TimingModes)

			// And the shipped one again: the next refusal switches back, logged again.
			dev.knowsGEMM.Store(false)
			dev.gen.Store(3)
			res, err = s.Execute(context.Background(), gemmOp(4, 16, 8))
			require.NoError(t, err)
			assert.Equal(t, protocol.ReqCompute, res.Timing.Kind)
			assert.Equal(t, 2, logs.count(fallbackMsg))
			assert.Equal(t, uint64(2), s.Stats().ComputeFallbacks)
		})
	}
}

func TestComputeUnits(t *testing.T) {
	u, ok := computeUnits(4, 16, 8)
	assert.True(t, ok)
	assert.Equal(t, uint64(1024), u)
	u, ok = computeUnits(1<<31, 1<<31, 1)
	assert.True(t, ok)
	assert.Equal(t, uint64(1)<<63, u)
	_, ok = computeUnits(1<<31, 1<<31, 2)
	assert.False(t, ok, "2·M·N·K = 2^64")
	_, ok = computeUnits(math.MaxUint32, math.MaxUint32, math.MaxUint32)
	assert.False(t, ok)

	// An op whose COMPUTE would overflow is untimed with cause overflow, its handle kept.
	dev := &layer5Device{}
	s := New(Config{Devices: []Opener{dev.open}, TimingRequest: TimingCompute, Logger: zerolog.Nop()})
	defer s.Close()
	tm := s.Time(context.Background(), []linalg.GEMMShape{{M: math.MaxUint32, N: math.MaxUint32, K: 4}})
	assert.Equal(t, UntimedOverflow, tm.Untimed)
	assert.Zero(t, tm.Requests)
}

func TestParseTimingRequest(t *testing.T) {
	for _, want := range []TimingRequest{TimingAuto, TimingGEMM, TimingCompute} {
		got, err := ParseTimingRequest(want.String())
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseTimingRequest("GEMM")
	assert.Error(t, err)
	assert.Equal(t, "TimingRequest(9)", TimingRequest(9).String())
}

// TestTimeEntriesFallback: a TIME frame on a device that refuses GEMM is timed with
// COMPUTE, every entry, the refusals counted as requests.
func TestTimeEntriesFallback(t *testing.T) {
	dev := &layer5Device{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	entries := [][]linalg.GEMMBatch{
		{{Shape: linalg.GEMMShape{M: 4, N: 16, K: 8}, Count: 1}},
		{{Shape: linalg.GEMMShape{M: 2, N: 3, K: 5}, Count: 3}},
		{{Shape: linalg.GEMMShape{M: 7, N: 1, K: 1}, Count: 1}, {Shape: linalg.GEMMShape{M: 4, N: 16, K: 8}, Count: 2}},
	}
	_, out := s.TimeEntries(context.Background(), entries)
	require.Len(t, out, 3)
	want := []uint64{100 * 2 * 4 * 16 * 8, 3 * 100 * 2 * 2 * 3 * 5, 100*2*7 + 2*100*2*4*16*8}
	for i, tm := range out {
		require.True(t, tm.Timed, "entry %d: %v", i, tm.UntimedErr)
		assert.Equal(t, want[i], tm.Cycles, "entry %d", i)
		assert.Equal(t, protocol.ReqCompute, tm.Kind)
	}
	st := s.Stats()
	assert.Equal(t, []string{"compute"}, st.TimingModes)
	assert.Equal(t, uint64(4), st.ComputeTimingRequests, "the device was not known yet: one COMPUTE per distinct batch (shape and count)")
	assert.GreaterOrEqual(t, st.TimingRequest, uint64(5), "and at least one refused BATCHED_GEMM or GEMM")

	// Now known to take COMPUTE only: one request per distinct shape, whatever the counts.
	_, out = s.TimeEntries(context.Background(), entries)
	for i, tm := range out {
		require.True(t, tm.Timed, "entry %d: %v", i, tm.UntimedErr)
		assert.Equal(t, want[i], tm.Cycles, "entry %d", i)
	}
	assert.Equal(t, uint64(4+3), s.Stats().ComputeTimingRequests, "one COMPUTE per distinct shape")
}

// TestBatchedFallback: a device that refuses BATCHED_GEMM but knows GEMM has its batches
// timed as GEMM × count from the op that found out on (the refusal counted as a request),
// under auto and gemm; a new link tries BATCHED_GEMM again.
func TestBatchedFallback(t *testing.T) {
	for _, mode := range []TimingRequest{TimingAuto, TimingGEMM} {
		t.Run(mode.String(), func(t *testing.T) {
			dev := &layer5Device{}
			dev.knowsGEMM.Store(true)
			var logs logBuffer
			s := New(Config{Devices: []Opener{dev.open}, TimingRequest: mode, Logger: zerolog.New(&logs)})
			defer s.Close()
			g := linalg.GEMMShape{M: 2, N: 3, K: 5}
			batch := []linalg.GEMMShape{g, g, g, g}
			one := uint64(2*3*5 + 7) // the fake's cycles for one GEMM
			for i, want := range []int{2, 1} {
				tm := s.Time(context.Background(), batch)
				require.True(t, tm.Timed, "op %d: %v", i, tm.UntimedErr)
				assert.Equal(t, 4*one, tm.Cycles, "op %d", i)
				assert.Equal(t, protocol.ReqGEMM, tm.Kind, "op %d", i)
				assert.Equal(t, want, tm.Requests, "op %d: the refused BATCHED_GEMM counts", i)
			}
			assert.Equal(t, int64(2), dev.gemms.Load())
			assert.Equal(t, 1, logs.count("does not know BATCHED_GEMM"))
			assert.Equal(t, []string{"gemm"}, s.Stats().TimingModes)

			// A TIME frame on the same device: one GEMM per shape, scaled per entry.
			_, out := s.TimeEntries(context.Background(), [][]linalg.GEMMBatch{{{Shape: g, Count: 3}}, {{Shape: g, Count: 2}}})
			assert.Equal(t, []uint64{3 * one, 2 * one}, []uint64{out[0].Cycles, out[1].Cycles})
			assert.Equal(t, int64(3), dev.gemms.Load(), "one GEMM for both entries")

			dev.gen.Add(1) // a new link: perhaps another SST
			tm := s.Time(context.Background(), batch)
			require.True(t, tm.Timed)
			assert.Equal(t, 2, tm.Requests, "BATCHED_GEMM tried again, refused again")
			assert.Equal(t, 2, logs.count("does not know BATCHED_GEMM"))
		})
	}
}

// TestBatchedRefusedMidFrame: the first batch of a TIME frame finds out; every entry is
// still timed, as GEMM × count.
func TestBatchedRefusedMidFrame(t *testing.T) {
	dev := &fakeDevice{refuseBatched: true}
	s := New(Config{Devices: []Opener{dev.open}, MaxHandles: 1, Logger: zerolog.Nop()})
	defer s.Close()
	g := linalg.GEMMShape{M: 2, N: 3, K: 4}
	_, out := s.TimeEntries(context.Background(), [][]linalg.GEMMBatch{{{Shape: g, Count: 3}}, {{Shape: g, Count: 2}}, {{Shape: g, Count: 1}}})
	for i, want := range []uint64{3 * 24, 2 * 24, 24} {
		require.True(t, out[i].Timed, "entry %d: %v", i, out[i].UntimedErr)
		assert.Equal(t, want, out[i].Cycles, "entry %d", i)
		assert.Equal(t, protocol.ReqGEMM, out[i].Kind, "entry %d", i)
	}
	assert.Equal(t, int64(1), dev.batched.Load(), "refused once, never asked again")
}
