package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
	"github.com/sstemu/sstemu/pkg/optrace"
)

// estimate runs `sstemu estimate --json args…` and returns its records.
func estimate(t *testing.T, args ...string) []optrace.WireRecord {
	t.Helper()
	out, err := exec.Command(sstemuBin, append([]string{"estimate", "--json"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var recs []optrace.WireRecord
	require.NoError(t, json.Unmarshal(out, &recs), "%s", out)
	return recs
}

// jsonOp sends one TIME or INFO frame on c and decodes the u32 BE T | JSON answer into v.
func jsonOp(t *testing.T, c net.Conn, op byte, js string, v any) {
	t.Helper()
	frame := binary.BigEndian.AppendUint32(nil, 0xDEADBEEF)
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(js)))
	frame = append(append(frame, op), js...)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err := c.Write(frame)
	require.NoError(t, err)
	var pre [4]byte
	_, err = io.ReadFull(c, pre[:])
	require.NoError(t, err)
	body := make([]byte, binary.BigEndian.Uint32(pre[:]))
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(body, v), "%s", body)
}

// A client asking for timing gets records whose cycles are what `sstemu estimate` prints for
// the same shape and model; the trace of the run passes the schema check and its ops' dur
// sums to their cycles at the clock; the op log has every record.
func TestTimingRecordsEqualEstimate(t *testing.T) {
	dir := t.TempDir()
	tracePath, logPath := filepath.Join(dir, "trace.json"), filepath.Join(dir, "ops.jsonl")
	model := []string{"--preset", "tpu-128", "--clock", "2GHz"}
	p := start(t, append([]string{"serve", "--listen", "127.0.0.1:0", "--devices", "2", "--trace", tracePath, "--op-log", logPath}, model...)...)
	addr := p.listenAddr("tcpfront")

	shapes := [][3]int{{4, 16, 8}, {1, 1, 1}, {129, 65, 33}, {256, 512, 128}}
	var args []string
	for _, s := range shapes {
		args = append(args, fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]))
	}
	want := estimate(t, append(model, args...)...)
	require.Len(t, want, len(shapes))

	c, err := loadgen.Dial(withTimeout(t, 5*time.Second), addr, loadgen.ClientOptions{Timing: true})
	require.NoError(t, err)
	defer c.Close()
	r := rand.New(rand.NewPCG(3, 3))
	var total uint64
	for round := range 2 {
		for i, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			a, b, out := randomMatrix(r, m*k), randomMatrix(r, k*n), make([]float32, m*n)
			require.NoError(t, c.GEMM(withTimeout(t, 30*time.Second), m, n, k, a, b, out))
			checkGEMM(t, m, n, k, a, b, out)
			var got optrace.WireRecord
			require.NoError(t, json.Unmarshal(c.LastTiming(), &got), "%s", c.LastTiming())
			w := want[i]
			assert.True(t, got.Timed, "round %d %v: %s", round, s, got.UntimedReason)
			assert.Equal(t, "systolic", got.Model)
			assert.Equal(t, "tpu-128", got.Preset)
			assert.Equal(t, 2e9, got.ClockHz)
			assert.Equal(t, w.Cycles, got.Cycles, "%v", s)
			assert.Equal(t, w.ComputeCycles, got.ComputeCycles, "%v", s)
			assert.Equal(t, w.MemoryCycles, got.MemoryCycles, "%v", s)
			assert.Equal(t, w.MemoryBytes, got.MemoryBytes, "%v", s)
			assert.Equal(t, w.FLOPs, got.FLOPs, "%v", s)
			assert.Equal(t, w.Bound, got.Bound, "%v", s)
			assert.InDelta(t, w.Utilization, got.Utilization, 1e-12, "%v", s)
			assert.InDelta(t, w.SimNS, got.SimNS, 1e-9, "%v", s)
			assert.Equal(t, got.Cycles, got.EndCycle-got.StartCycle)
			total += got.Cycles
		}
	}
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
	assert.Contains(t, p.output(), "trace: 8 frames written")

	data, err := os.ReadFile(tracePath)
	require.NoError(t, err)
	require.True(t, json.Valid(data), "a trace closed on SIGTERM is complete JSON")
	sum, err := optrace.CheckTrace(data)
	require.NoError(t, err)
	assert.False(t, sum.Truncated)
	var ops int
	var durUS float64
	for _, pid := range []int{optrace.DevicePID(0), optrace.DevicePID(1)} {
		ops += sum.OpCount[pid]
		durUS += sum.OpDurUS[pid]
	}
	assert.Equal(t, 2*len(shapes), ops, "one simulated slice per op, on the two devices")
	assert.InDelta(t, float64(total)/2e9*1e6, durUS, 1e-3*float64(ops), "dur sums to the cycles at 2 GHz (±1 ns per op)")
	assert.Equal(t, 4*2*len(shapes), sum.HostSpans, "frame, decode, compute and timing per op")

	lines, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Len(t, strings.Split(strings.TrimSpace(string(lines)), "\n"), 2*len(shapes))
}

// LLaMA-2-70B's decoder layer at sequence 4096, shapes only, through all five layers: every
// entry is timed, and each one's cycles are what estimate gives its GEMM shape, times the
// GEMMs it lowers to.
func TestTimeLLaMA70BThroughTheStack(t *testing.T) {
	p := start(t, "serve", "--listen", "127.0.0.1:0")
	addr := p.listenAddr("tcpfront")
	const seq, hidden, heads, kv, hd, ffn = 4096, 8192, 64, 8, 128, 28672
	type entry struct {
		js    string
		shape string
		count uint64
	}
	gemmEntry := func(m, n, k int) entry {
		return entry{fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, m, n, k), fmt.Sprintf("%dx%dx%d", m, n, k), 1}
	}
	entries := []entry{
		gemmEntry(seq, heads*hd, hidden), gemmEntry(seq, kv*hd, hidden), gemmEntry(seq, kv*hd, hidden),
		{fmt.Sprintf(`{"op": "matmul", "A_shape": [1, %d, %d, %d], "B_shape": [1, %d, %d, %d]}`, heads, seq, hd, heads, hd, seq), fmt.Sprintf("%dx%dx%d", seq, seq, hd), heads},
		{fmt.Sprintf(`{"op": "matmul", "A_shape": [1, %d, %d, %d], "B_shape": [1, %d, %d, %d]}`, heads, seq, seq, heads, seq, hd), fmt.Sprintf("%dx%dx%d", seq, hd, seq), heads},
		gemmEntry(seq, hidden, heads*hd), gemmEntry(seq, ffn, hidden), gemmEntry(seq, ffn, hidden), gemmEntry(seq, hidden, ffn),
	}
	var js, shapes []string
	for _, e := range entries {
		js = append(js, e.js)
		shapes = append(shapes, e.shape)
	}
	want := estimate(t, shapes...)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	var resp struct {
		OpID    int64                `json:"op_id"`
		Results []optrace.WireRecord `json:"results"`
	}
	jsonOp(t, c, 0x04, `{"op_id": 70, "ops": [`+strings.Join(js, ", ")+`]}`, &resp)
	require.Len(t, resp.Results, len(entries))
	for i, r := range resp.Results {
		assert.True(t, r.Timed, "entry %d: %s %s", i, r.UntimedReason, r.Error)
		assert.Equal(t, entries[i].count*want[i].Cycles, r.Cycles, "entry %d (%s)", i, shapes[i])
		assert.Equal(t, entries[i].count*want[i].FLOPs, r.FLOPs, "entry %d", i)
		assert.Equal(t, entries[i].count, r.GEMMs)
	}

	var info map[string]any
	jsonOp(t, c, 0x05, `{"op_id": 2}`, &info)
	assert.Equal(t, "roofline", info["model"])
	assert.Equal(t, "a100-tutorial", info["preset"])
	assert.Equal(t, 1.41e9, info["clock_hz"], "the preset's model clock")
	assert.Equal(t, 64.0, info["peak_flops_per_cycle"])
	assert.InDelta(t, 900/1.41, info["bytes_per_cycle"], 1e-9)
	assert.Equal(t, map[string]any{"kind": "in-process", "path": ""}, info["layer5"])
	assert.Nil(t, info["gpu"], "not the gpu model")
	assert.Equal(t, 1.0, info["devices"])
}

// A trace cut off by SIGKILL lacks only its closing brackets: it still passes the schema
// check.
func TestTraceSurvivesSIGKILL(t *testing.T) {
	tracePath := filepath.Join(t.TempDir(), "trace.json")
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--trace", tracePath)
	addr := p.listenAddr("tcpfront")
	c := dial(t, addr, false)
	r := rand.New(rand.NewPCG(4, 4))
	// Ops until the writer has put some on disk (it writes in batches, within 5 ms), then a
	// few more, which may be lost with the process.
	ops := 0
	for ; ops < 10000; ops++ {
		gemm(t, c, r, 4, 16, 8)
		if fi, err := os.Stat(tracePath); err == nil && fi.Size() > 2048 {
			break
		}
	}
	for range 20 {
		gemm(t, c, r, 4, 16, 8)
	}
	ops += 21
	_ = p.cmd.Process.Kill()
	<-p.done
	data, err := os.ReadFile(tracePath)
	require.NoError(t, err)
	sum, err := optrace.CheckTrace(data)
	require.NoError(t, err)
	assert.True(t, sum.Truncated)
	assert.Positive(t, sum.OpCount[optrace.DevicePID(0)])
	assert.LessOrEqual(t, sum.OpCount[optrace.DevicePID(0)], ops)
}
