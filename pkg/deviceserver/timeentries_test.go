package deviceserver

import (
	"context"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

func TestTimeEntriesSharesRequestsAndScales(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	g1, g2 := linalg.GEMMShape{M: 2, N: 3, K: 4}, linalg.GEMMShape{M: 5, N: 6, K: 7}
	entries := [][]linalg.GEMMBatch{
		{{Shape: g1, Count: 1}},
		{{Shape: g2, Count: 3}},
		{{Shape: g1, Count: 2}, {Shape: g2, Count: 1}},
		nil,
	}
	device, got := s.TimeEntries(context.Background(), entries)
	assert.Equal(t, 0, device)
	require.Len(t, got, 4)
	assert.Equal(t, int64(4), dev.requests.Load(), "four distinct batches, four requests")
	assert.Equal(t, int64(2), dev.batched.Load(), "the batches of 3 and of 2, one BATCHED_GEMM each")
	for i, want := range []uint64{24, 3 * 210, 2*24 + 210, 0} {
		assert.True(t, got[i].Timed, "entry %d", i)
		assert.Equal(t, want, got[i].Cycles, "entry %d: the fake's M·N·K per GEMM, scaled", i)
		assert.Equal(t, len(entries[i]), got[i].Requests)
	}
	assert.Equal(t, []protocol.RequestType{protocol.ReqGEMM, protocol.ReqBatchedGEMM, protocol.ReqBatchedGEMM, 0},
		[]protocol.RequestType{got[0].Kind, got[1].Kind, got[2].Kind, got[3].Kind})
	assert.Equal(t, uint64(4), s.Stats().TimingRequest)
	assert.LessOrEqual(t, dev.opened.Load(), int64(4), "at most one handle per request in flight")
	assert.Zero(t, dev.closed.Load(), "handles go back to the pool, none is closed")
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
