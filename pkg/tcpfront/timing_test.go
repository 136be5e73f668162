package tcpfront

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/optrace"
)

// timingExecutor is layer 2 as the front end sees it: naive numerics, and a timing of M·N·K
// cycles per GEMM (compute-bound, one memory cycle), on device 0; it also times TIME
// entries the same way.
type timingExecutor struct {
	naiveExecutor
	untimed bool // answer every op untimed, as with the SST down
}

func fakeTiming(batches []linalg.GEMMBatch, untimed bool) deviceserver.Timing {
	if untimed {
		return deviceserver.Timing{Requests: len(batches), Untimed: deviceserver.UntimedLinkDown, UntimedErr: errors.New("device status NO_DEVICE")}
	}
	t := deviceserver.Timing{Timed: true}
	for _, b := range batches {
		c := uint64(b.Shape.M*b.Shape.N*b.Shape.K) * uint64(b.Count)
		t.Cycles += c
		t.ComputeCycles += c
		t.MemoryCycles += uint64(b.Count)
		t.MemoryBytes += 4 * uint64(b.Count)
		t.Requests++
	}
	return t
}

func (e *timingExecutor) Execute(ctx context.Context, op *deviceserver.Op) (*deviceserver.Result, error) {
	res, err := e.naiveExecutor.Execute(ctx, op)
	if err != nil {
		return nil, err
	}
	res.Timing = fakeTiming(opBatches(op), e.untimed)
	return res, nil
}

func (e *timingExecutor) TimeEntries(_ context.Context, entries [][]linalg.GEMMBatch) (int, []deviceserver.Timing) {
	out := make([]deviceserver.Timing, len(entries))
	for i, b := range entries {
		out[i] = fakeTiming(b, e.untimed)
	}
	return 0, out
}

// readTrailer reads u32 BE T | T bytes and decodes them into v.
func readJSONFrame(t *testing.T, r io.Reader, v any) []byte {
	t.Helper()
	var pre [4]byte
	_, err := io.ReadFull(r, pre[:])
	require.NoError(t, err)
	js := make([]byte, binary.BigEndian.Uint32(pre[:]))
	_, err = io.ReadFull(r, js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, v), "%s", js)
	return js
}

var testLayer5 = optrace.Layer5{Kind: optrace.Layer5InProcess, Model: "roofline", Preset: "a100-tutorial", ClockHz: 2e9}

// The worked example of docs/wire.md with "timing": true: the same result bytes, then
// u32 BE T and a record whose cycles are layer 2's.
func TestServerTimingTrailer(t *testing.T) {
	ts := startServer(t, &timingExecutor{}, func(s *Server) { s.Layer5 = testLayer5 })
	c := ts.dial(t)
	js := `{"op_id": 7, "M": 2, "N": 2, "K": 3, "A_shape": [2, 3], "B_shape": [3, 2], "dtype": "float32", "timing": true}`
	req := frame(1, js, []float32{1, 2, 3, 4, 5, 6}, []float32{7, 8, 9, 10, 11, 12})
	var starts []uint64
	for range 2 {
		_, err := c.Write(req)
		require.NoError(t, err)
		got := make([]byte, len(handGEMMResponse))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, handGEMMResponse, got, "the result is exactly the untimed answer")
		var r optrace.WireRecord
		readJSONFrame(t, c, &r)
		assert.Equal(t, int64(7), r.OpID)
		assert.Nil(t, r.Index, "no index outside TIME")
		assert.Equal(t, "gemm", r.Op)
		assert.True(t, r.Timed)
		assert.Equal(t, "", r.UntimedReason)
		assert.Equal(t, 0, r.Device)
		assert.Equal(t, "roofline", r.Model)
		assert.Equal(t, 2e9, r.ClockHz)
		assert.Equal(t, uint64(12), r.Cycles, "2·2·3 fake cycles")
		assert.Equal(t, uint64(2*2*2*3), r.FLOPs)
		assert.Equal(t, "compute", r.Bound)
		assert.Equal(t, 6.0, r.SimNS, "12 cycles at 2 GHz")
		assert.Equal(t, uint64(1), r.GEMMs)
		assert.Equal(t, 1, r.Requests)
		assert.Equal(t, r.Cycles, r.EndCycle-r.StartCycle)
		require.NotNil(t, r.ServerUS)
		require.NotNil(t, r.ServerUS.Total)
		assert.GreaterOrEqual(t, *r.ServerUS.Total, *r.ServerUS.Decode+*r.ServerUS.Compute+*r.ServerUS.Timing-1e-3)
		starts = append(starts, r.StartCycle)
	}
	assert.Equal(t, []uint64{0, 12}, starts, "the device's timeline: one op after the other")

	// The reference client's frame, on the same connection, still gets exactly today's bytes.
	_, err := c.Write(handGEMMFrame)
	require.NoError(t, err)
	got := make([]byte, len(handGEMMResponse)+1)
	_ = c.SetReadDeadline(timeNowPlus(200))
	n, _ := io.ReadFull(c, got)
	assert.Equal(t, handGEMMResponse, got[:n], "no trailer without the key")
	st := ts.Stats()
	assert.Equal(t, uint64(3), st.Ops)
	assert.Equal(t, uint64(2), st.Trailers)
}

func TestServerTimingUntimedAndFalse(t *testing.T) {
	ts := startServer(t, &timingExecutor{untimed: true}, nil)
	c := ts.dial(t)
	js := `{"op_id": 3, "A_shape": [2, 3], "B_shape": [3], "dtype": "float32", "timing": true}`
	_, err := c.Write(frame(3, js, ramp(6, 1), ramp(3, 2)))
	require.NoError(t, err)
	res := make([]byte, 4+8)
	_, err = io.ReadFull(c, res)
	require.NoError(t, err)
	var r optrace.WireRecord
	readJSONFrame(t, c, &r)
	assert.Equal(t, "matmul", r.Op)
	assert.False(t, r.Timed)
	assert.Equal(t, "link_down", r.UntimedReason)
	assert.Equal(t, uint64(2*2*3), r.FLOPs, "an untimed op still carries its FLOPs")
	assert.Equal(t, uint64((2*3+3+2)*4), r.MemoryBytes, "and its operand bytes")
	assert.Equal(t, "", r.Bound)
	assert.Zero(t, r.StartCycle)
	assert.Zero(t, r.EndCycle)

	// "timing": false is today's answer.
	js = strings.Replace(js, "true", "false", 1)
	_, err = c.Write(frame(3, js, ramp(6, 1), ramp(3, 2)))
	require.NoError(t, err)
	_, err = io.ReadFull(c, res)
	require.NoError(t, err)
	_ = c.SetReadDeadline(timeNowPlus(200))
	n, _ := c.Read(make([]byte, 1))
	assert.Zero(t, n, "no trailer with false")
}

// LLaMA-2-70B, one decoder layer at sequence 4096: hidden 8192, 64 heads of 128, 8 KV
// heads, FFN 28672. Its GEMMs, far beyond any tensor limit, in one TIME frame.
func llamaDecoderLayerJSON(opID int) (string, []linalg.GEMMShape) {
	const seq, hidden, heads, kvHeads, headDim, ffn = 4096, 8192, 64, 8, 128, 28672
	entries := []string{
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, heads*headDim, hidden),   // q_proj
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, kvHeads*headDim, hidden), // k_proj
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, kvHeads*headDim, hidden), // v_proj
		// scores = Q·Kᵀ per head, then probabilities · V (grouped-query: K, V broadcast)
		fmt.Sprintf(`{"op": "matmul", "A_shape": [1, %d, %d, %d], "B_shape": [1, %d, %d, %d]}`, heads, seq, headDim, heads, headDim, seq),
		fmt.Sprintf(`{"op": "matmul", "A_shape": [1, %d, %d, %d], "B_shape": [1, %d, %d, %d]}`, heads, seq, seq, heads, seq, headDim),
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, hidden, heads*headDim), // o_proj
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, ffn, hidden),           // gate_proj
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, ffn, hidden),           // up_proj
		fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, seq, hidden, ffn),           // down_proj
	}
	shapes := []linalg.GEMMShape{
		{M: seq, N: heads * headDim, K: hidden}, {M: seq, N: kvHeads * headDim, K: hidden}, {M: seq, N: kvHeads * headDim, K: hidden},
		{M: seq, N: seq, K: headDim}, {M: seq, N: headDim, K: seq},
		{M: seq, N: hidden, K: heads * headDim}, {M: seq, N: ffn, K: hidden}, {M: seq, N: ffn, K: hidden}, {M: seq, N: hidden, K: ffn},
	}
	return fmt.Sprintf(`{"op_id": %d, "ops": [%s]}`, opID, strings.Join(entries, ", ")), shapes
}

func TestServerTimeLLaMA70BDecoderLayer(t *testing.T) {
	ts := startServer(t, &timingExecutor{}, func(s *Server) { s.Layer5 = testLayer5 })
	c := ts.dial(t)
	js, shapes := llamaDecoderLayerJSON(70)
	_, err := c.Write(frame(4, js))
	require.NoError(t, err)
	var resp struct {
		OpID    int64                `json:"op_id"`
		Results []optrace.WireRecord `json:"results"`
	}
	readJSONFrame(t, c, &resp)
	assert.Equal(t, int64(70), resp.OpID)
	require.Len(t, resp.Results, len(shapes))
	var end uint64
	for i, r := range resp.Results {
		g := shapes[i]
		count := uint64(1)
		if r.Op == "matmul" {
			count = 64 // one GEMM per head
		}
		require.NotNil(t, r.Index)
		assert.Equal(t, i, *r.Index)
		assert.Equal(t, int64(70), r.OpID, "entries carry the frame's op_id")
		assert.True(t, r.Timed, "entry %d: %s", i, r.Error)
		assert.Equal(t, count*uint64(g.M*g.N*g.K), r.Cycles, "entry %d", i)
		assert.Equal(t, count*2*uint64(g.M)*uint64(g.N)*uint64(g.K), r.FLOPs, "entry %d", i)
		assert.Equal(t, count, r.GEMMs)
		assert.Equal(t, end, r.StartCycle, "entries occupy consecutive intervals, in order")
		end = r.EndCycle
	}
	assert.Equal(t, uint64(1), ts.Stats().TimeFrames)
	assert.Equal(t, uint64(len(shapes)), ts.Stats().TimeEntries)
}

func TestServerTimeBadEntriesAndFrames(t *testing.T) {
	ts := startServer(t, &timingExecutor{}, nil)
	c := ts.dial(t)
	js := `{"op_id": 1, "ops": [
		{"op": "gemm", "M": 4, "N": 16, "K": 8},
		{"op": "matmul", "A_shape": [2, 3], "B_shape": [4, 5]},
		{"op": "conv", "input_shape": [1, 3, 8, 8], "weight_shape": [4, 3, 3, 3], "padding": 1, "op_id": 99},
		{"op": "fft"},
		{"op": "gemm", "M": 0, "N": 1, "K": 1},
		{"op": "gemm", "M": 1, "N": 1, "K": 1, "groups": 2},
		{"op": "gemm", "M": 1, "N": 1, "K": 1, "dtype": "bfloat16"},
		7,
		{"op": "gemm", "M": 1, "N": 1, "K": 1, "A_shape": [1, 2]},
		{"op": "conv", "input_shape": [1, 1, 2, 2], "weight_shape": [1, 1, 3, 3]}
	]}`
	_, err := c.Write(frame(4, js))
	require.NoError(t, err)
	var resp struct {
		Results []optrace.WireRecord `json:"results"`
	}
	readJSONFrame(t, c, &resp)
	require.Len(t, resp.Results, 10)
	wantErr := []string{"", "B_shape", "", "op: unknown op", "M: dimension must be positive", "groups: not a field of op gemm",
		"dtype: unsupported", "not a JSON object", "A_shape", "weight_shape"}
	for i, r := range resp.Results {
		if wantErr[i] == "" {
			assert.True(t, r.Timed, "entry %d: %s", i, r.Error)
			assert.Empty(t, r.Error)
			continue
		}
		assert.False(t, r.Timed, "entry %d", i)
		assert.Equal(t, "invalid_shape", r.UntimedReason)
		assert.Contains(t, r.Error, wantErr[i], "entry %d", i)
	}
	assert.Equal(t, int64(99), resp.Results[2].OpID)
	assert.Equal(t, uint64(4*8*8*27), resp.Results[2].Cycles, "conv: M=4 filters, N=64 pixels, K=27")

	// Malformed frames close the connection, one log line each.
	for name, bad := range map[string]string{
		"no ops":       `{"op_id": 1, "ops": []}`,
		"ops missing":  `{"op_id": 1}`,
		"ops not list": `{"op_id": 1, "ops": {}}`,
		"no op_id":     `{"ops": [{"op": "gemm", "M": 1, "N": 1, "K": 1}]}`,
		"unknown key":  `{"op_id": 1, "ops": [{"op": "gemm", "M": 1, "N": 1, "K": 1}], "x": 1}`,
		"too many":     `{"op_id": 1, "ops": [` + strings.Repeat(`{"op": "gemm", "M": 1, "N": 1, "K": 1},`, MaxTimeEntries) + `{"op": "gemm", "M": 1, "N": 1, "K": 1}]}`,
		"not JSON":     `{"op_id": 1, "ops": [`,
	} {
		t.Run(name, func(t *testing.T) {
			c := ts.dial(t)
			_, err := c.Write(frame(4, bad))
			require.NoError(t, err)
			_ = c.SetReadDeadline(timeNowPlus(5000))
			n, err := c.Read(make([]byte, 1))
			assert.Zero(t, n)
			assert.ErrorIs(t, err, io.EOF, "closed without an answer")
		})
	}
}

func TestServerTimeWorkLimit(t *testing.T) {
	// 2^31-1 cubed GEMMs are 2^94 FLOPs: the frame's bound is reached at once; later
	// small entries still fit only if the budget allows, which it no longer does here
	// because the sum is checked entry by entry.
	f, fe := parseTime([]byte(`{"op_id": 1, "ops": [{"op": "gemm", "M": 2147483647, "N": 2147483647, "K": 2147483647},
		{"op": "gemm", "M": 1048576, "N": 1048576, "K": 1048576}, {"op": "gemm", "M": 1, "N": 1, "K": 1}]}`))
	require.Nil(t, fe)
	assert.Contains(t, f.Entries[0].Err, "overflow 64 bits")
	assert.Contains(t, f.Entries[1].Err, "work limit", "2^61 FLOPs exceed MaxTimeFLOPs")
	assert.Empty(t, f.Entries[2].Err)
	assert.Equal(t, uint64(2), f.Entries[2].FLOPs)
}

func TestServerInfo(t *testing.T) {
	ts := startServer(t, &timingExecutor{}, func(s *Server) {
		s.Layer5 = testLayer5
		s.Info = Info{Version: "test-1", Devices: 3}
	})
	c := ts.dial(t)
	_, err := c.Write(frame(5, `{"op_id": 5}`))
	require.NoError(t, err)
	var info map[string]any
	readJSONFrame(t, c, &info)
	assert.Equal(t, float64(5), info["op_id"])
	assert.Equal(t, "test-1", info["sstemu_version"])
	assert.Equal(t, float64(WireVersion), info["protocol_version"])
	assert.Equal(t, map[string]any{"gemm": 1.0, "conv": 2.0, "matmul": 3.0, "time": 4.0, "info": 5.0}, info["ops"])
	assert.Equal(t, float64(3), info["devices"])
	assert.Equal(t, map[string]any{"kind": "in-process", "path": ""}, info["layer5"])
	assert.Equal(t, "roofline", info["model"])
	assert.Equal(t, 2e9, info["clock_hz"])
	k := linalg.Kernels()
	assert.Equal(t, map[string]any{"backend": k.Backend, "core": k.Core, "source": k.Source,
		"thread_timeout": float64(k.ThreadTimeout), "thread_timeout_source": k.ThreadTimeoutSource, "fallback": k.Fallback}, info["gemm_kernels"])
	limits := info["limits"].(map[string]any)
	assert.Equal(t, float64(DefaultMaxOpBytes), limits["max_op_bytes"])
	assert.Equal(t, float64(MaxTimeEntries), limits["max_time_entries"])
	assert.Equal(t, float64(MaxTimeJSONBytes), limits["max_time_json_bytes"])

	_, err = c.Write(frame(5, `{"op_id": 5, "x": 1}`))
	require.NoError(t, err)
	_ = c.SetReadDeadline(timeNowPlus(5000))
	n, err := c.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "an unknown key closes the connection")
	assert.Equal(t, uint64(1), ts.Stats().InfoFrames)
}

// The recorder gets one record per op and per TIME entry, and its trace passes the schema
// check with ops' durations summing to their cycles at the clock.
func TestServerRecorder(t *testing.T) {
	var trace, log bytes.Buffer
	tr, err := optrace.NewTrace(&trace, optrace.TraceOptions{Devices: 1, ClockHz: 2e9})
	require.NoError(t, err)
	rec := &optrace.Recorder{Trace: tr, Log: optrace.NewLog(&log, 0), Ring: optrace.NewRing(4)}
	ts := startServer(t, &timingExecutor{}, func(s *Server) { s.Layer5 = testLayer5; s.Recorder = rec })
	c := ts.dial(t)
	for range 3 {
		_, err := c.Write(handGEMMFrame)
		require.NoError(t, err)
		_, err = io.ReadFull(c, make([]byte, len(handGEMMResponse)))
		require.NoError(t, err)
	}
	js, _ := llamaDecoderLayerJSON(1)
	_, err = c.Write(frame(4, js))
	require.NoError(t, err)
	var resp map[string]any
	readJSONFrame(t, c, &resp)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, timeoutMS(5000), timeoutMS(1))
	require.NoError(t, tr.Close())
	require.NoError(t, rec.Log.Close())

	sum, err := optrace.CheckTrace(trace.Bytes())
	require.NoError(t, err, "%s", trace.Bytes())
	assert.Equal(t, 3+9, sum.OpCount[optrace.DevicePID(0)])
	recs, total := rec.Ring.Snapshot()
	assert.Equal(t, uint64(12), total)
	require.Len(t, recs, 4)
	var cycles uint64
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var r optrace.WireRecord
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		cycles += r.Cycles
	}
	assert.InDelta(t, float64(cycles)/2e9*1e6, sum.OpDurUS[optrace.DevicePID(0)], 12e-3, "±1 ns per op")
	assert.Equal(t, 4*3+3, sum.HostSpans, "3 ops × (frame, decode, compute, timing) and TIME's frame, decode, timing")
}

func timeoutMS(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

func timeNowPlus(ms int) time.Time { return time.Now().Add(timeoutMS(ms)) }

// BenchmarkParseTime decodes and plans a TIME frame of 1000 GEMM entries (layer 1's part
// of BenchmarkTIME in pkg/stack), per frame.
func BenchmarkParseTime(b *testing.B) {
	parts := make([]string, 1000)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"op": "gemm", "M": %d, "N": 128, "K": 256}`, i+1)
	}
	js := []byte(`{"op_id": 1, "ops": [` + strings.Join(parts, ", ") + `]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, fe := parseTime(js); fe != nil {
			b.Fatal(fe)
		}
	}
}

func TestTimeEntryUnknownKeyNamesTheKeyAndTheOp(t *testing.T) {
	tests := []struct {
		name, entry, op, want string
		opID                  int64
	}{
		{"unknown key", `{"op": "gemm", "op_id": 3, "M": 1, "N": 1, "K": 1, "x": 1}`, "gemm", "x: not a field of op gemm", 3},
		{"timing in an entry", `{"op": "matmul", "A_shape": [1, 2], "B_shape": [2, 1], "timing": false}`, "matmul", "timing: not a field of op matmul", 9},
		{"unknown key, no op", `{"M": 1, "y": 2}`, "", "y: not a field of a TIME entry", 9},
		{"wrong type keeps the cause", `{"op": "gemm", "M": "1", "N": 1, "K": 1}`, "gemm", "M: field has the wrong type", 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, fe := parseTime([]byte(`{"op_id": 9, "ops": [` + tt.entry + `]}`))
			require.Nil(t, fe)
			require.Len(t, f.Entries, 1)
			e := f.Entries[0]
			assert.Equal(t, tt.want, e.Err[:min(len(e.Err), len(tt.want))], "whole error: %s", e.Err)
			assert.Equal(t, tt.op, e.Op)
			assert.Equal(t, tt.opID, e.OpID)
		})
	}
}

func TestPlanTimeGEMMsIsTIMEsRule(t *testing.T) {
	for _, tt := range []struct {
		js             string
		count, m, n, k int64
	}{
		{`{"op": "gemm", "M": 4, "N": 16, "K": 8}`, 1, 4, 16, 8},
		{`{"op": "matmul", "A_shape": [3, 4, 8], "B_shape": [3, 8, 16]}`, 3, 4, 16, 8},
		{`{"op": "gemm", "M": 2147483648, "N": 1, "K": 1}`, 1, 1 << 31, 1, 1},
		{`{"op": "matmul", "A_shape": [4294967297, 1, 1], "B_shape": [4294967297, 1, 1]}`, 1<<32 + 1, 1, 1, 1},
	} {
		f, fe := parseTime([]byte(`{"op_id": 0, "ops": [` + tt.js + `]}`))
		require.Nil(t, fe)
		assert.Equal(t, f.Entries[0], PlanTimeGEMMs(tt.count, tt.m, tt.n, tt.k), tt.js)
	}
}

func TestTimeFrameOfTheWrongJSONTypeSaysWhatItWants(t *testing.T) {
	_, fe := parseTime([]byte(`[{"op": "gemm", "M": 1, "N": 1, "K": 1}]`))
	require.NotNil(t, fe)
	assert.Contains(t, fe.Reason, "want a JSON object")
	assert.NotContains(t, fe.Reason, "tcpfront.")
	_, fe = parseTime([]byte(`{"op_id": 1, "ops": {}}`))
	require.NotNil(t, fe)
	assert.Contains(t, fe.Reason, "want a JSON array")
}
