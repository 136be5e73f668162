package deviceserver

import (
	"context"
	"encoding/json"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// fakeDevice stands in for layer 3: it answers a GEMM request with cycles = M·N·K and
// compute/memory parts derived from it, a BATCHED_GEMM with batch times that, and can be
// told to fail.
type fakeDevice struct {
	opened, closed atomic.Int64
	requests       atomic.Int64
	batched        atomic.Int64 // BATCHED_GEMM requests received
	refuseBatched  bool         // answer BATCHED_GEMM INVALID, as a component that knows GEMM only
	knowsLists     bool         // answer GEMM_LIST entry by entry (else INVALID, as every SST but sstemu's)
	refuseM        uint32       // answer a GEMM of this M INVALID, and stop a list's answer at it
	lists          atomic.Int64 // GEMM_LIST requests received
	listEntries    atomic.Int64 // entries of the GEMM_LISTs answered
	writeErr       error        // returned by every Write when set
	status         protocol.Status
	corruptTag     bool // answer with the wrong user_data
}

func (d *fakeDevice) open() (DeviceFile, error) {
	d.opened.Add(1)
	return &fakeFile{dev: d}, nil
}

type fakeFile struct {
	dev *fakeDevice
	storedAnswer
}

// storedAnswer is a fake file's pending answer: Write stores the encoded response in
// stored, Read hands it out once and answers EAGAIN while none is pending, as /dev/sst0.
type storedAnswer struct{ stored []byte }

func (s *storedAnswer) Read(p []byte) (int, error) {
	if s.stored == nil {
		return 0, syscall.EAGAIN
	}
	n := copy(p, s.stored)
	s.stored = nil
	return n, nil
}

func (f *fakeFile) Write(p []byte) (int, error) {
	if f.dev.writeErr != nil {
		return 0, f.dev.writeErr
	}
	if len(p) < protocol.RequestSize {
		return 0, syscall.EINVAL
	}
	var req protocol.Request
	if err := req.Decode(p[:protocol.RequestSize]); err != nil {
		return 0, err
	}
	f.dev.requests.Add(1)
	var resp protocol.Response
	resp.ReplyTo(&req)
	resp.Status = f.dev.status
	if f.dev.corruptTag {
		resp.UserData++
	}
	if req.Type == protocol.ReqGEMMList {
		f.dev.answerList(&req, &resp)
		f.stored, _ = resp.MarshalBinary()
		return protocol.RequestSize, nil
	}
	g := req.GEMM()
	cycles := uint64(g.M) * uint64(g.N) * uint64(g.K)
	if f.dev.refuseM != 0 && g.M == f.dev.refuseM {
		resp.Status = protocol.StatusInvalid
	}
	batch := uint64(1)
	if req.Type == protocol.ReqBatchedGEMM {
		f.dev.batched.Add(1)
		batch = req.BatchedGEMM().Batch
		if hi, _ := bits.Mul64(batch, cycles); hi != 0 || f.dev.refuseBatched {
			resp.Status = protocol.StatusInvalid // as layer 5 answers an overflow
		}
	}
	resp.Result = batch * cycles
	resp.SetGEMM(protocol.GEMMResult{Cycles: batch * cycles, ComputeCycles: batch * cycles, MemoryCycles: batch, MemoryBytes: batch * uint64(g.DtypeSize)})
	f.stored, _ = resp.MarshalBinary()
	return protocol.RequestSize, nil
}

// answerList answers a GEMM_LIST as layer 5 does, with the fake's costs (M·N·K cycles per
// GEMM, scaled by the batch): entry by entry, stopping at the first whose cost overflows.
func (d *fakeDevice) answerList(req *protocol.Request, resp *protocol.Response) {
	d.lists.Add(1)
	h, err := req.CheckGEMMList()
	if err != nil || !d.knowsLists {
		resp.Status = protocol.StatusInvalid
		return
	}
	n := 0
	for ; n < int(h.Count); n++ {
		e, err := req.CheckGEMMListEntry(n)
		if err != nil {
			break
		}
		hi, cycles := bits.Mul64(uint64(e.M)*uint64(e.N)*uint64(e.K), e.Batch)
		if hi != 0 || (d.refuseM != 0 && e.M == d.refuseM) {
			break
		}
		resp.SetGEMMListResult(n, protocol.GEMMResult{Cycles: cycles, ComputeCycles: cycles, MemoryCycles: e.Batch, MemoryBytes: e.Batch * uint64(h.DtypeSize)})
	}
	d.listEntries.Add(int64(n))
	resp.Result = uint64(n)
}

func (f *fakeFile) Close() error {
	f.dev.closed.Add(1)
	return nil
}

func randomMatrix(r *rand.Rand, n int) []float32 {
	m := make([]float32, n)
	for i := range m {
		m[i] = float32(r.NormFloat64())
	}
	return m
}

// checkAgainstFloat64 compares C to a float64 GEMM: each element may differ by at most
// 1e-5 · Σ_k |a_ik·b_kj| (float32 accumulation of K terms, generous for K ≤ 4096).
func checkAgainstFloat64(t *testing.T, m, n, k int, a, b, c []float32) {
	t.Helper()
	require.Len(t, c, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var ref, mag float64
			for p := 0; p < k; p++ {
				x := float64(a[i*k+p]) * float64(b[p*n+j])
				ref += x
				mag += math.Abs(x)
			}
			if d := math.Abs(float64(c[i*n+j]) - ref); d > 1e-5*mag+1e-30 {
				t.Fatalf("C[%d,%d] = %g, float64 reference %g (|diff| %g > tolerance %g)", i, j, c[i*n+j], ref, d, 1e-5*mag)
			}
		}
	}
}

func TestGEMMComputedAndTimed(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	for _, sh := range []struct{ m, n, k int }{{1, 1, 1}, {4, 16, 8}, {7, 3, 5}, {1, 64, 33}, {65, 1, 17}} {
		a, b := randomMatrix(r, sh.m*sh.k), randomMatrix(r, sh.k*sh.n)
		res, err := s.Execute(context.Background(), &Op{ID: 1, Type: OpGEMM, GEMM: &GEMM{M: sh.m, N: sh.n, K: sh.k, A: a, B: b}})
		require.NoError(t, err)
		assert.Equal(t, []int{sh.m, sh.n}, res.Shape)
		checkAgainstFloat64(t, sh.m, sh.n, sh.k, a, b, res.Data)
		assert.True(t, res.Timing.Timed)
		assert.Equal(t, 1, res.Timing.Requests)
		assert.Equal(t, uint64(sh.m*sh.n*sh.k), res.Timing.Cycles)
	}
	st := s.Stats()
	assert.Equal(t, uint64(5), st.GEMM)
	assert.Equal(t, uint64(5), st.Timed)
	assert.Equal(t, uint64(5), st.TimingRequest)
	assert.Equal(t, int64(1), dev.opened.Load(), "one caller reuses one handle")
}

func TestUntimedWhenTheDeviceFails(t *testing.T) {
	// The driver's errors come as an *os.PathError holding the errno, as from /dev/sst0.
	pathErr := func(errno syscall.Errno) error { return &os.PathError{Op: "write", Path: "/dev/sst0", Err: errno} }
	tests := []struct {
		name     string
		dev      *fakeDevice
		cause    UntimedCause
		wantName string
		detail   string
	}{
		{"driver timeout", &fakeDevice{writeErr: pathErr(syscall.ETIMEDOUT)}, UntimedTimeout, "timeout", "timed out"},
		{"device removed", &fakeDevice{writeErr: pathErr(syscall.ENODEV)}, UntimedDeviceUnavailable, "device_unavailable", "no such device"},
		{"I/O error", &fakeDevice{writeErr: pathErr(syscall.EIO)}, UntimedDeviceError, "device_error", "input/output error"},
		{"file closed", &fakeDevice{writeErr: pathErr(syscall.EINTR)}, UntimedClosed, "closed", "interrupted"},
		{"status NO_DEVICE", &fakeDevice{status: protocol.StatusNoDevice}, UntimedLinkDown, "link_down", "NO_DEVICE"},
		{"status TIMEOUT", &fakeDevice{status: protocol.StatusTimeout}, UntimedTimeout, "timeout", "TIMEOUT"},
		{"status ERROR", &fakeDevice{status: protocol.StatusError}, UntimedDeviceError, "device_error", "ERROR"},
		{"mismatched response", &fakeDevice{corruptTag: true}, UntimedDeviceError, "device_error", "user_data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Devices: []Opener{tt.dev.open}, Logger: zerolog.Nop()})
			defer s.Close()
			a := []float32{1, 2, 3, 4}
			b := []float32{5, 6, 7, 8}
			res, err := s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 2, A: a, B: b}})
			require.NoError(t, err, "the client still gets its result")
			assert.Equal(t, []float32{19, 22, 43, 50}, res.Data)
			assert.False(t, res.Timing.Timed)
			assert.Equal(t, tt.cause, res.Timing.Untimed)
			assert.Equal(t, tt.wantName, res.Timing.Untimed.String())
			if tt.cause == UntimedDeviceError {
				assert.Equal(t, protocol.ReqGEMM, res.Timing.Kind, "the device answered (or failed) the GEMM")
			} else {
				assert.Zero(t, res.Timing.Kind, "no request was answered")
			}
			require.Error(t, res.Timing.UntimedErr)
			assert.Contains(t, res.Timing.UntimedErr.Error(), tt.detail)
			st := s.Stats()
			assert.Equal(t, uint64(1), st.Untimed)
			assert.Equal(t, uint64(1), st.UntimedByCause[tt.cause])
			assert.Equal(t, tt.dev.opened.Load(), tt.dev.closed.Load(), "a failed handle is closed, not reused")
		})
	}
}

func TestUntimedCausesOfTheServer(t *testing.T) {
	gemm := func() *Op {
		return &Op{Type: OpGEMM, GEMM: &GEMM{M: 1, N: 1, K: 1, A: []float32{3}, B: []float32{4}}}
	}
	t.Run("closed", func(t *testing.T) {
		dev := &fakeDevice{}
		s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
		require.NoError(t, s.Close())
		res, err := s.Execute(context.Background(), gemm())
		require.NoError(t, err)
		assert.Equal(t, UntimedClosed, res.Timing.Untimed)
		assert.Zero(t, dev.opened.Load())
	})
	t.Run("canceled", func(t *testing.T) {
		// The only handle is taken: an op whose context is already done gives up waiting.
		dev := &fakeDevice{}
		s := New(Config{Devices: []Opener{dev.open}, MaxHandles: 1, Logger: zerolog.Nop()})
		defer s.Close()
		pool := s.devices[0]
		h, _, err := pool.get(context.Background())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := s.Execute(ctx, gemm())
		require.NoError(t, err)
		assert.Equal(t, UntimedCanceled, res.Timing.Untimed)
		assert.ErrorIs(t, res.Timing.UntimedErr, context.Canceled)
		pool.put(h)
	})
	t.Run("invalid_shape", func(t *testing.T) {
		dev := &fakeDevice{}
		s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
		defer s.Close()
		tm := s.Time(context.Background(), []linalg.GEMMShape{{M: 1, N: 1, K: 1}, {M: 1 << 33, N: 1, K: 1}})
		assert.Equal(t, UntimedInvalidShape, tm.Untimed)
		assert.Equal(t, 1, tm.Requests, "the first GEMM was sent")
		assert.Equal(t, int64(0), dev.closed.Load(), "nothing bad was sent: the handle is kept")
	})
	t.Run("overflow", func(t *testing.T) {
		dev := &fakeDevice{}
		s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
		defer s.Close()
		big := linalg.GEMMShape{M: 1 << 31, N: 1 << 31, K: 2} // 2^63 fake cycles, twice
		tm := s.Time(context.Background(), []linalg.GEMMShape{big, big})
		assert.Equal(t, UntimedOverflow, tm.Untimed)
		assert.False(t, tm.Timed)
	})
}

// The cause names are a contract (logs, /stats, the wire): they are unique, snake_case,
// and only UntimedNone is empty.
func TestUntimedCauseNames(t *testing.T) {
	seen := map[string]bool{}
	want := []string{"no_device", "closed", "canceled", "device_unavailable", "link_down", "timeout",
		"device_error", "overflow", "invalid_shape"}
	var got []string
	for _, c := range UntimedCauses() {
		name := c.String()
		assert.Regexp(t, `^[a-z]+(_[a-z]+)*$`, name)
		assert.False(t, seen[name], "duplicate %q", name)
		seen[name] = true
		got = append(got, name)
	}
	assert.Equal(t, want, got)
	assert.Empty(t, UntimedNone.String())
	assert.Equal(t, "cause(200)", UntimedCause(200).String())
}

func TestNoDeviceAndBadOps(t *testing.T) {
	s := New(Config{Logger: zerolog.Nop()})
	res, err := s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: 1, N: 1, K: 1, A: []float32{3}, B: []float32{4}}})
	require.NoError(t, err)
	assert.Equal(t, []float32{12}, res.Data)
	assert.Equal(t, UntimedNoDevice, res.Timing.Untimed)
	assert.Equal(t, uint64(1), s.Stats().UntimedByCause[UntimedNoDevice])

	_, err = s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: 2, N: 1, K: 1, A: []float32{3}, B: []float32{4}}})
	assert.Error(t, err, "A shorter than M·K")
	_, err = s.Execute(context.Background(), &Op{Type: OpConv})
	assert.Error(t, err, "CONV without operands")
	assert.Equal(t, uint64(2), s.Stats().Failed)
}

func TestOpenErrorIsUntimed(t *testing.T) {
	s := New(Config{Devices: []Opener{func() (DeviceFile, error) { return nil, syscall.ENODEV }}, Logger: zerolog.Nop()})
	res, err := s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: 1, N: 1, K: 1, A: []float32{1}, B: []float32{1}}})
	require.NoError(t, err)
	assert.False(t, res.Timing.Timed)
	assert.Equal(t, UntimedDeviceUnavailable, res.Timing.Untimed)
	assert.ErrorIs(t, res.Timing.UntimedErr, syscall.ENODEV)
}

func TestConcurrentOpsSpreadOverDevicesWithBoundedHandles(t *testing.T) {
	devs := []*fakeDevice{{}, {}, {}}
	var openers []Opener
	for _, d := range devs {
		openers = append(openers, d.open)
	}
	const maxHandles, callers, perCaller = 4, 32, 30
	s := New(Config{Devices: openers, MaxHandles: maxHandles, Logger: zerolog.Nop()})
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perCaller; i++ {
				m := 1 + (g+i)%5
				a := make([]float32, m)
				for j := range a {
					a[j] = float32(g)
				}
				res, err := s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: m, N: 1, K: 1, A: a, B: []float32{2}}})
				if !assert.NoError(t, err) || !assert.True(t, res.Timing.Timed) {
					return
				}
				assert.Equal(t, uint64(m), res.Timing.Cycles)
				assert.Equal(t, float32(2*g), res.Data[m-1])
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Close())
	var total int64
	for _, d := range devs {
		assert.LessOrEqual(t, d.opened.Load(), int64(maxHandles))
		assert.Equal(t, d.opened.Load(), d.closed.Load(), "Close closes every pooled handle")
		assert.Positive(t, d.requests.Load(), "round-robin reaches every device")
		total += d.requests.Load()
	}
	assert.Equal(t, int64(callers*perCaller), total)
}

func TestMatmulAndConvAreTimedPerGEMMShape(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()

	// torch.matmul of [3,2,4]·[4,5]: three batches of one 2×5×4 GEMM, timed with one request.
	a := make([]float32, 3*2*4)
	for i := range a {
		a[i] = float32(i % 7)
	}
	b := make([]float32, 4*5)
	for i := range b {
		b[i] = float32(i%3) - 1
	}
	res, err := s.Execute(context.Background(), &Op{Type: OpMatmul, Matmul: &Matmul{AShape: []int{3, 2, 4}, BShape: []int{4, 5}, A: a, B: b}})
	require.NoError(t, err)
	assert.Equal(t, []int{3, 2, 5}, res.Shape)
	for batch := 0; batch < 3; batch++ {
		checkAgainstFloat64(t, 2, 5, 4, a[batch*8:batch*8+8], b, res.Data[batch*10:batch*10+10])
	}
	assert.Equal(t, 1, res.Timing.Requests)
	assert.Equal(t, uint64(3*2*5*4), res.Timing.Cycles, "three GEMMs of 40 fake cycles")

	// A 3×3 convolution of a [1,2,4,4] input with 4 filters in 2 groups: per group a GEMM of
	// M = 2 filters, N = 2·2 output pixels, K = 1·3·3.
	in := make([]float32, 2*4*4)
	for i := range in {
		in[i] = 1
	}
	w := make([]float32, 4*1*3*3)
	for i := range w {
		w[i] = float32(i / 9) // filter o has every weight equal to o
	}
	res, err = s.Execute(context.Background(), &Op{Type: OpConv, Conv: &Conv2D{
		InputShape: [4]int{1, 2, 4, 4}, WeightShape: [4]int{4, 1, 3, 3},
		Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 2, Input: in, Weight: w,
	}})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 4, 2, 2}, res.Shape)
	for o := 0; o < 4; o++ {
		for px := 0; px < 4; px++ {
			assert.Equal(t, float32(9*o), res.Data[o*4+px], "filter %d sums nine ones times %d", o, o)
		}
	}
	assert.Equal(t, 1, res.Timing.Requests)
	assert.Equal(t, uint64(2*(2*4*9)), res.Timing.Cycles)
	st := s.Stats()
	assert.Equal(t, uint64(1), st.Matmul)
	assert.Equal(t, uint64(1), st.Conv)
}

func TestCoalesce(t *testing.T) {
	g1, g2 := linalg.GEMMShape{M: 1, N: 2, K: 3}, linalg.GEMMShape{M: 4, N: 5, K: 6}
	assert.Equal(t, []linalg.GEMMBatch{{Shape: g1, Count: 2}, {Shape: g2, Count: 1}, {Shape: g1, Count: 1}}, coalesce([]linalg.GEMMShape{g1, g1, g2, g1}))
	assert.Empty(t, coalesce(nil))
}

func TestTimingAddDetectsOverflow(t *testing.T) {
	var tm Timing
	require.True(t, tm.add(protocol.GEMMResult{Cycles: 3, ComputeCycles: 3, MemoryCycles: 1, MemoryBytes: 8}, 4))
	assert.Equal(t, Timing{Cycles: 12, ComputeCycles: 12, MemoryCycles: 4, MemoryBytes: 32}, tm)
	assert.False(t, tm.add(protocol.GEMMResult{Cycles: 1 << 62}, 4), "2^62·4 = 2^64 does not fit")
	tm = Timing{Cycles: math.MaxUint64}
	assert.False(t, tm.add(protocol.GEMMResult{Cycles: 1}, 1), "the sum carries out")
}

// A broadcast matmul of many tiny products is described and timed as one batch: the
// number of GEMMs never becomes a list as long as the output.
func TestBroadcastMatmulIsOneBatch(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	const n = 300 // [n,1,1,1]·[1,n,1,1] → [n,n,1,1]: n² GEMMs of 1×1×1
	a := make([]float32, n)
	b := make([]float32, n)
	for i := range a {
		a[i], b[i] = float32(i), 2
	}
	res, err := s.Execute(context.Background(), &Op{Type: OpMatmul, Matmul: &Matmul{AShape: []int{n, 1, 1, 1}, BShape: []int{1, n, 1, 1}, A: a, B: b}})
	require.NoError(t, err)
	assert.Equal(t, []int{n, n, 1, 1}, res.Shape)
	assert.Equal(t, float32(2*(n-1)), res.Data[(n-1)*n+5], "A[n-1]·B[5]")
	assert.Equal(t, 1, res.Timing.Requests)
	assert.Equal(t, uint64(n*n), res.Timing.Cycles, "n² GEMMs of one fake cycle each")
	assert.Equal(t, int64(1), dev.requests.Load())
}

// An outage is one warning per change of cause, not one per op; a shutdown is none; every
// op line carries the cause as a string and its error.
func TestUntimedWarnsOncePerCause(t *testing.T) {
	var logs strings.Builder
	dev := &fakeDevice{status: protocol.StatusNoDevice}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	run := func(n int) {
		for range n {
			_, err := s.Execute(context.Background(), &Op{Type: OpGEMM, GEMM: &GEMM{M: 1, N: 1, K: 1, A: []float32{1}, B: []float32{1}}})
			require.NoError(t, err)
		}
	}
	run(3) // link down: one warning
	dev.status = protocol.StatusTimeout
	run(2) // another cause: one more
	dev.status = protocol.StatusOK
	run(1) // timed again
	dev.status = protocol.StatusNoDevice
	run(2) // down again: warned again
	require.NoError(t, s.Close())
	run(2) // closed: no warning

	var warns []string
	var causes []any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["level"] == "warn" {
			warns = append(warns, m["untimed"].(string))
		}
		causes = append(causes, m["untimed"])
		if m["untimed"] != nil {
			assert.IsType(t, "", m["error"], line)
		}
	}
	assert.Equal(t, []string{"link_down", "timeout", "link_down"}, warns)
	assert.Equal(t, []any{"link_down", "link_down", "link_down", "timeout", "timeout", nil, "link_down", "link_down", "closed", "closed"}, causes)
}

// An op that arrives with its Plan (as the front end sends it) is computed and timed from
// the plan alone; a plan of another kind than the op is an error, not a wrong answer.
func TestExecuteUsesTheOpsPlan(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	plan, err := linalg.PlanMatmul([]int{2, 1, 2}, []int{2})
	require.NoError(t, err)
	// The shape fields are left empty: only the plan says what the op is.
	op := &Op{Type: OpMatmul, Matmul: &Matmul{A: []float32{1, 2, 3, 4}, B: []float32{10, 1}}, Plan: &plan}
	res, err := s.Execute(context.Background(), op)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 1}, res.Shape)
	assert.Equal(t, []float32{12, 34}, res.Data)
	assert.Equal(t, uint64(2*1*1*2), res.Timing.Cycles, "two GEMMs of 1×1×2")

	gemmPlan, err := linalg.PlanGEMM(linalg.GEMMShape{M: 1, N: 1, K: 1})
	require.NoError(t, err)
	_, err = s.Execute(context.Background(), &Op{Type: OpMatmul, Matmul: &Matmul{A: []float32{1}, B: []float32{1}}, Plan: &gemmPlan})
	assert.ErrorContains(t, err, "gemm plan")
	_, err = s.Execute(context.Background(), &Op{Type: OpMatmul, Matmul: &Matmul{A: []float32{1}, B: []float32{1, 2}}, Plan: &plan})
	assert.ErrorIs(t, err, linalg.ErrLength, "tensors that do not fit the plan")
}

// Op.Out is used for the result when it holds it, whatever it held, and ignored when not.
func TestExecuteWritesIntoOut(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	op := func(out []float32) *Op {
		return &Op{Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 1, A: []float32{1, 2}, B: []float32{3, 4}}, Out: out}
	}
	want := []float32{3, 4, 6, 8}
	out := []float32{9, 9, 9, 9, 9}
	res, err := s.Execute(context.Background(), op(out))
	require.NoError(t, err)
	assert.Equal(t, want, res.Data)
	assert.Same(t, &out[0], &res.Data[0], "the result is in Out")
	assert.Equal(t, []int{2, 2}, res.Shape)

	small := make([]float32, 3)
	res, err = s.Execute(context.Background(), op(small))
	require.NoError(t, err)
	assert.Equal(t, want, res.Data)
	assert.Equal(t, []float32{0, 0, 0}, small, "an Out too small is left alone")
}

func TestOpTypeNameIsLowerCase(t *testing.T) {
	for op, want := range map[OpType]string{OpGEMM: "gemm", OpConv: "conv", OpMatmul: "matmul"} {
		assert.Equal(t, want, op.Name())
	}
}
