package optrace

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/syncbuffer"
)

// run builds a trace of ops frames on two devices and conns connections.
func runTrace(t *testing.T, tr *Trace, tl *Timeline, frames int) (cycles [2]uint64) {
	t.Helper()
	start := time.Now()
	for i := range frames {
		dev := i % 2
		rec := Record{OpID: int64(i), Index: -1, Op: "gemm", Timed: i%5 != 4, Device: dev, ClockHz: 1.41e9,
			Cycles: uint64(1000 + 37*i), ComputeCycles: uint64(1000 + 37*i)}
		if rec.Timed {
			rec.StartCycle, rec.EndCycle = tl.Reserve(dev, rec.Cycles)
			cycles[dev] += rec.Cycles
		}
		sp := &Spans{Conn: uint64(1 + i%3), Frame: int64(i / 3), Name: "gemm",
			Start: start.Add(time.Duration(i) * 10 * time.Microsecond), Decode: 1234, Compute: 2000, Timing: 3333, Total: 7000, HasCompute: true, HasTiming: true}
		tr.Add([]Record{rec}, sp)
	}
	return cycles
}

func TestTraceSchemaAndSums(t *testing.T) {
	var buf syncbuffer.Buffer
	tr, err := NewTrace(&buf, TraceOptions{Devices: 2, ClockHz: 1.41e9})
	require.NoError(t, err)
	cycles := runTrace(t, tr, NewTimeline(2), 200)
	require.NoError(t, tr.Close())
	data := buf.Bytes()
	require.True(t, json.Valid(data), "a closed trace is plain JSON")
	sum, err := CheckTrace(data)
	require.NoError(t, err)
	assert.False(t, sum.Truncated)
	assert.Equal(t, map[int]int{DevicePID(0): 80, DevicePID(1): 80}, sum.OpCount, "untimed ops (every fifth) have no simulated slice")
	assert.Equal(t, 200*4, sum.HostSpans, "one frame span and three layer spans per frame")
	for dev := range 2 {
		wantUS := float64(cycles[dev]) / 1.41e9 * 1e6
		assert.InDelta(t, wantUS, sum.OpDurUS[DevicePID(dev)], 1e-3*float64(sum.OpCount[DevicePID(dev)]),
			"device %d: dur sums to its cycles at the clock (±1 ns per op of rounding)", dev)
	}
	// Process and track names are there, and the host process is named as documented.
	assert.Contains(t, string(data), `"args":{"name":"host (wall clock)"}`)
	assert.Contains(t, string(data), `"args":{"name":"conn 2"}`)
	assert.Contains(t, string(data), `"dropped_frames":0`)
}

func TestTraceCutOffStillLoads(t *testing.T) {
	var buf syncbuffer.Buffer
	tr, err := NewTrace(&buf, TraceOptions{Devices: 2})
	require.NoError(t, err)
	runTrace(t, tr, NewTimeline(2), 50)
	// What a SIGKILL leaves: everything written so far, no closing brackets. Let the
	// writer catch up first, as the kernel would have the bytes.
	require.Eventually(t, func() bool { return tr.Stats().Items == 50 }, 5*time.Second, time.Millisecond)
	data := buf.Bytes()
	assert.False(t, json.Valid(data))
	sum, err := CheckTrace(data)
	require.NoError(t, err)
	assert.True(t, sum.Truncated)
	assert.Equal(t, 40, sum.OpCount[DevicePID(0)]+sum.OpCount[DevicePID(1)])
	// Cut anywhere, at worst the last event is lost.
	for cut := len(data) - 1; cut > len(data)-400; cut -= 7 {
		_, err := CheckTrace(data[:cut])
		require.NoError(t, err, "cut at %d", cut)
	}
	require.NoError(t, tr.Close())
}

// stallWriter blocks every write until released: a disk that has stopped.
type stallWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (w *stallWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	w.n += len(p)
	w.mu.Unlock()
	return len(p), nil
}

func TestSlowDiskDropsAndCountsInsteadOfBlocking(t *testing.T) {
	w := &stallWriter{release: make(chan struct{})}
	header := make(chan struct{})
	go func() { w.release <- struct{}{}; close(header) }() // let the header through
	tr, err := NewTrace(w, TraceOptions{Devices: 1, BufferBytes: 16 << 10})
	require.NoError(t, err)
	<-header
	done := make(chan struct{})
	go func() {
		defer close(done)
		runTrace(t, tr, NewTimeline(2), 2000)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Add blocked on a stalled writer")
	}
	st := tr.Stats()
	assert.Positive(t, st.Dropped, "frames beyond the buffer are dropped")
	close(w.release) // the disk wakes up
	require.NoError(t, tr.Close())
	st = tr.Stats()
	assert.Equal(t, uint64(2000), st.Items+st.Dropped, "every frame is written or counted as dropped")
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLogLinesAndWriteError(t *testing.T) {
	var buf syncbuffer.Buffer
	l := NewLog(&buf, 0)
	recs := []Record{sampleRecord(), {OpID: 8, Index: 0, Op: "conv", Device: -1}}
	l.Add(recs, nil)
	l.Add(recs[:1], nil)
	require.NoError(t, l.Close())
	sc := bufio.NewScanner(strings.NewReader(string(buf.Bytes())))
	var ids []int64
	for sc.Scan() {
		var d WireRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &d), "each line is one record")
		ids = append(ids, d.OpID)
	}
	assert.Equal(t, []int64{7, 8, 7}, ids)

	l = NewLog(failWriter{}, 0)
	l.Add(recs, nil)
	err := l.Close()
	require.ErrorContains(t, err, "disk full")
	assert.Equal(t, uint64(1), l.Stats().Dropped)
}

func TestRingKeepsTheLatest(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add([]Record{{OpID: int64(i), Index: -1}})
	}
	recs, total := r.Snapshot()
	assert.Equal(t, uint64(5), total)
	require.Len(t, recs, 3)
	assert.Equal(t, []int64{2, 3, 4}, []int64{recs[0].OpID, recs[1].OpID, recs[2].OpID})
	var doc struct {
		Total uint64       `json:"total"`
		Size  int          `json:"size"`
		Ops   []WireRecord `json:"ops"`
	}
	require.NoError(t, json.Unmarshal(r.AppendJSON(nil), &doc))
	assert.Equal(t, uint64(5), doc.Total)
	assert.Equal(t, 3, doc.Size)
	assert.Len(t, doc.Ops, 3)
}

func TestCheckTraceRejects(t *testing.T) {
	for name, ev := range map[string]string{
		"float pid":    `{"name":"a","ph":"X","pid":1.5,"tid":1,"ts":0,"dur":1}`,
		"string tid":   `{"name":"a","ph":"X","pid":1,"tid":"1","ts":0,"dur":1}`,
		"X without ts": `{"name":"a","ph":"X","pid":1,"tid":1,"dur":1}`,
		"no name":      `{"ph":"X","pid":1,"tid":1,"ts":0,"dur":1}`,
		"misnested":    `{"name":"a","ph":"X","pid":1,"tid":1,"ts":0,"dur":2},{"name":"b","ph":"X","pid":1,"tid":1,"ts":1,"dur":2}`,
		"mixed clocks": `{"name":"a","cat":"op","ph":"X","pid":1,"tid":1,"ts":0,"dur":2},{"name":"b","ph":"X","pid":1,"tid":2,"ts":1,"dur":2}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := CheckTrace([]byte(`{"traceEvents":[` + ev + `]}`))
			assert.Error(t, err)
		})
	}
}

// stuckWriter lets the first free writes through and blocks the others until release is
// closed, like a FIFO nobody reads.
type stuckWriter struct {
	free             *atomic.Int32
	entered, release chan struct{}
}

func (w stuckWriter) Write(b []byte) (int, error) {
	if w.free.Add(-1) >= 0 {
		return len(b), nil
	}
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return len(b), nil
}

func TestCloseContextGivesUpOnAStuckWriter(t *testing.T) {
	for _, name := range []string{"trace", "log"} {
		t.Run(name, func(t *testing.T) {
			w := stuckWriter{free: new(atomic.Int32), entered: make(chan struct{}, 1), release: make(chan struct{})}
			defer close(w.release)
			var add func([]Record)
			var closeCtx func(context.Context) error
			var stats func() SinkStats
			if name == "trace" {
				w.free.Store(1) // NewTrace's header
				tr, err := NewTrace(w, TraceOptions{Devices: 1, ClockHz: 1e9})
				require.NoError(t, err)
				add = func(r []Record) { tr.Add(r, nil) }
				closeCtx, stats = tr.CloseContext, tr.Stats
			} else {
				l := NewLog(w, 0)
				add = func(r []Record) { l.Add(r, nil) }
				closeCtx, stats = l.CloseContext, l.Stats
			}
			add([]Record{sampleRecord()})
			<-w.entered // the writer is stuck in its first write
			add([]Record{sampleRecord()})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			err := closeCtx(ctx)
			require.ErrorIs(t, err, ErrWriterStuck)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			st := stats()
			assert.Equal(t, uint64(0), st.Items, "nothing finished writing")
			assert.GreaterOrEqual(t, st.Dropped, uint64(2), "the stuck write and the pending item are dropped")
			assert.Contains(t, st.Error, "did not finish in time")
		})
	}
}
