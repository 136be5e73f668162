package deviceserver

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// TestTimeEntriesSharesRequestsAndScales: a frame's equal batches share one answer,
// scaled by count; against a device that knows GEMM_LIST the four distinct batches go as
// one list, otherwise the refused list is followed by one request each.
func TestTimeEntriesSharesRequestsAndScales(t *testing.T) {
	g1, g2 := linalg.GEMMShape{M: 2, N: 3, K: 4}, linalg.GEMMShape{M: 5, N: 6, K: 7}
	entries := [][]linalg.GEMMBatch{
		{{Shape: g1, Count: 1}},
		{{Shape: g2, Count: 3}},
		{{Shape: g1, Count: 2}, {Shape: g2, Count: 1}},
		nil,
	}
	const (
		gemm    = protocol.ReqGEMM
		batched = protocol.ReqBatchedGEMM
		list    = protocol.ReqGEMMList
	)
	tests := []struct {
		name                     string
		knowsLists               bool
		requests, lists, batched int64
		kinds                    []protocol.RequestType
	}{
		{"GEMM_LIST", true, 1, 1, 0, []protocol.RequestType{list, list, list, 0}},
		{"GEMM_LIST refused", false, 5, 1, 2, []protocol.RequestType{gemm, batched, batched, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := &fakeDevice{knowsLists: tt.knowsLists}
			s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
			defer s.Close()
			device, got := s.TimeEntries(context.Background(), entries)
			assert.Equal(t, 0, device)
			require.Len(t, got, 4)
			assert.Equal(t, tt.requests, dev.requests.Load(), "requests the device received")
			assert.Equal(t, tt.lists, dev.lists.Load(), "GEMM_LISTs")
			assert.Equal(t, tt.batched, dev.batched.Load(), "the batches of 3 and of 2, one BATCHED_GEMM each, unless listed")
			for i, want := range []uint64{24, 3 * 210, 2*24 + 210, 0} {
				assert.True(t, got[i].Timed, "entry %d", i)
				assert.Equal(t, want, got[i].Cycles, "entry %d: the fake's M·N·K per GEMM, scaled", i)
				assert.Equal(t, len(entries[i]), got[i].Requests)
			}
			assert.Equal(t, tt.kinds, []protocol.RequestType{got[0].Kind, got[1].Kind, got[2].Kind, got[3].Kind})
			assert.Equal(t, uint64(tt.requests), s.Stats().TimingRequest)
			assert.LessOrEqual(t, dev.opened.Load(), int64(4), "at most one handle per request in flight")
			assert.Zero(t, dev.closed.Load(), "handles go back to the pool, none is closed")
		})
	}
}

func TestTimeEntriesUntimed(t *testing.T) {
	g := []linalg.GEMMBatch{{Shape: linalg.GEMMShape{M: 1, N: 1, K: 1}, Count: 1}}
	s := New(Config{Logger: zerolog.Nop()})
	device, got := s.TimeEntries(context.Background(), [][]linalg.GEMMBatch{g, g})
	assert.Equal(t, -1, device)
	assert.Equal(t, UntimedNoDevice, got[1].Untimed)

	for name, dev := range map[string]*fakeDevice{
		"write error": {writeErr: syscall.ETIMEDOUT},
		"status":      {status: protocol.StatusNoDevice},
	} {
		t.Run(name, func(t *testing.T) {
			s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
			defer s.Close()
			_, got := s.TimeEntries(context.Background(), [][]linalg.GEMMBatch{g, g})
			for _, tm := range got {
				assert.False(t, tm.Timed)
				assert.NotEqual(t, UntimedNone, tm.Untimed)
				assert.Error(t, tm.UntimedErr)
			}
			assert.Equal(t, dev.opened.Load(), dev.closed.Load(), "failed handles are closed")
		})
	}
	// Many distinct shapes: several workers, every one answered.
	dev := &fakeDevice{}
	s = New(Config{Devices: []Opener{dev.open}, MaxHandles: 4, Logger: zerolog.Nop()})
	defer s.Close()
	var many [][]linalg.GEMMBatch
	for m := 1; m <= 100; m++ {
		many = append(many, []linalg.GEMMBatch{{Shape: linalg.GEMMShape{M: m, N: 2, K: 3}, Count: 1}})
	}
	_, got = s.TimeEntries(context.Background(), many)
	for i, tm := range got {
		assert.Equal(t, uint64(6*(i+1)), tm.Cycles)
	}
	assert.LessOrEqual(t, dev.opened.Load(), int64(4), "within MaxHandles")
}

// TestTimeEntriesUntimedBatchKeepsOthersAligned: an entry whose first batch cannot be
// timed is untimed as a whole, and the entries after it still get their own answers.
func TestTimeEntriesUntimedBatchKeepsOthersAligned(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	bad := linalg.GEMMBatch{Shape: linalg.GEMMShape{M: 0, N: 1, K: 1}, Count: 1}
	batch := func(m int) linalg.GEMMBatch {
		return linalg.GEMMBatch{Shape: linalg.GEMMShape{M: m, N: 2, K: 3}, Count: 1}
	}
	_, got := s.TimeEntries(context.Background(), [][]linalg.GEMMBatch{
		{bad, batch(2)}, {batch(4)}, {batch(5), batch(2)},
	})
	require.Len(t, got, 3)
	assert.False(t, got[0].Timed)
	assert.Equal(t, UntimedInvalidShape, got[0].Untimed)
	assert.True(t, got[1].Timed)
	assert.Equal(t, uint64(24), got[1].Cycles)
	assert.True(t, got[2].Timed)
	assert.Equal(t, uint64(30+12), got[2].Cycles)
}

// distinctEntries returns n TIME entries of one GEMM each, M = 1 … n, N = 2, K = 3.
func distinctEntries(n int) [][]linalg.GEMMBatch {
	entries := make([][]linalg.GEMMBatch, n)
	for i := range entries {
		entries[i] = []linalg.GEMMBatch{{Shape: linalg.GEMMShape{M: 1 + i, N: 2, K: 3}, Count: 1}}
	}
	return entries
}

// TestTimeEntriesLists: 300 distinct shapes go as three GEMM_LISTs (127, 127, 46
// entries), each entry answered as its own GEMM would be, from one or several workers.
func TestTimeEntriesLists(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			dev := &fakeDevice{knowsLists: true}
			s := New(Config{Devices: []Opener{dev.open}, EntryWorkers: workers, Logger: zerolog.Nop()})
			defer s.Close()
			_, got := s.TimeEntries(context.Background(), distinctEntries(300))
			for i, tm := range got {
				require.True(t, tm.Timed, "entry %d: %v", i, tm.UntimedErr)
				assert.Equal(t, uint64(6*(i+1)), tm.Cycles, "entry %d", i)
				assert.Equal(t, protocol.ReqGEMMList, tm.Kind)
				assert.Equal(t, 1, tm.Requests)
			}
			assert.Equal(t, int64(3), dev.lists.Load())
			assert.Equal(t, int64(3), dev.requests.Load(), "lists only")
			assert.Equal(t, int64(300), dev.listEntries.Load())
			assert.Equal(t, uint64(3), s.Stats().TimingRequest)
			assert.LessOrEqual(t, dev.opened.Load(), int64(workers))
		})
	}
}

// TestTimeEntriesListStops: a batch the list's answer stops at is sent alone for its own
// answer (here INVALID: device_error), one that does not fit 32-bit dimensions is never
// listed (invalid_shape), and the batches after both go as lists again, all answered.
func TestTimeEntriesListStops(t *testing.T) {
	dev := &fakeDevice{knowsLists: true, refuseM: 3}
	s := New(Config{Devices: []Opener{dev.open}, TimingRequest: TimingGEMM, Logger: zerolog.Nop()})
	defer s.Close()
	entries := distinctEntries(6)
	entries = append(entries[:4], append([][]linalg.GEMMBatch{{{Shape: linalg.GEMMShape{M: 1 << 33, N: 2, K: 3}, Count: 1}}}, entries[4:]...)...)
	_, got := s.TimeEntries(context.Background(), entries)
	require.Len(t, got, 7)
	for i, want := range []uint64{6, 12, 0, 24, 0, 30, 36} {
		assert.Equal(t, want != 0, got[i].Timed, "entry %d", i)
		assert.Equal(t, want, got[i].Cycles, "entry %d", i)
	}
	assert.Equal(t, UntimedDeviceError, got[2].Untimed)
	assert.Contains(t, got[2].UntimedErr.Error(), "GEMM INVALID")
	assert.Equal(t, UntimedInvalidShape, got[4].Untimed)
	// Lists [1 2 3 4] (answered up to 3), [4], [5 6]; GEMM 3 alone.
	assert.Equal(t, int64(3), dev.lists.Load())
	assert.Equal(t, int64(4), dev.requests.Load())
	assert.Equal(t, int64(5), dev.listEntries.Load())
	assert.Zero(t, dev.closed.Load(), "a refused request leaves the handle as good as before")
}

// TestTimeEntriesListLinkDown: a device without its SST answers the list NO_DEVICE: every
// batch of it is untimed link_down and the handle is closed.
func TestTimeEntriesListLinkDown(t *testing.T) {
	dev := &fakeDevice{knowsLists: true, status: protocol.StatusNoDevice}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	_, got := s.TimeEntries(context.Background(), distinctEntries(10))
	for i, tm := range got {
		assert.False(t, tm.Timed, "entry %d", i)
		assert.Equal(t, UntimedLinkDown, tm.Untimed, "entry %d", i)
	}
	assert.Equal(t, int64(1), dev.requests.Load(), "one list, no retries within the frame")
	assert.Equal(t, dev.opened.Load(), dev.closed.Load(), "failed handles are closed")
}

// TestTimeEntriesListRefused: against a component that knows GEMM but not GEMM_LIST (the
// tutorial's), the first frame's refused list is logged once and its shapes are sent one
// GEMM each, later frames send no list, and a new link tries lists again.
func TestTimeEntriesListRefused(t *testing.T) {
	dev := &layer5Device{}
	dev.knowsGEMM.Store(true)
	var logs logBuffer
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	defer s.Close()
	frame := distinctEntries(5)
	check := func(lists, gemms int64) {
		t.Helper()
		_, got := s.TimeEntries(context.Background(), frame)
		for i, tm := range got {
			require.True(t, tm.Timed, "entry %d: %v", i, tm.UntimedErr)
			assert.Equal(t, uint64(6*(i+1)+7), tm.Cycles, "entry %d: the fake's M·N·K + 7", i)
			assert.Equal(t, protocol.ReqGEMM, tm.Kind)
		}
		assert.Equal(t, lists, dev.lists.Load(), "GEMM_LISTs sent so far")
		assert.Equal(t, gemms, dev.gemms.Load(), "GEMMs sent so far")
	}
	check(1, 5)
	check(1, 10)
	assert.Equal(t, 1, logs.count("does not know GEMM_LIST"), "logged once: %s", logs.String())
	dev.gen.Add(1)
	check(2, 15)
	assert.Equal(t, uint64(2+15), s.Stats().TimingRequest, "refused lists count as requests")
}
