package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/refsst"
)

// batchedRecord is the part of a TIME result these tests read.
type batchedRecord struct {
	Timed         bool   `json:"timed"`
	UntimedReason string `json:"untimed_reason"`
	Op            string `json:"op"`
	Model         string `json:"model"`
	Cycles        uint64 `json:"cycles"`
	MemoryBytes   uint64 `json:"memory_bytes"`
	FLOPs         uint64 `json:"flops"`
	GEMMs         uint64 `json:"gemms"`
	Requests      int    `json:"requests"`
	TimingRequest string `json:"timing_request"`
}

// timeBMM sends one TIME frame on a new connection to addr: torch.bmm of
// [batch,m,k]·[batch,k,n], then one m×n×k GEMM, twice over.
func timeBMM(t *testing.T, addr string, batch, m, n, k int) []batchedRecord {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	bmm := fmt.Sprintf(`{"op": "matmul", "A_shape": [%d, %d, %d], "B_shape": [%d, %d, %d]}`, batch, m, k, batch, k, n)
	gemm := fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, m, n, k)
	var resp struct {
		Results []batchedRecord `json:"results"`
	}
	jsonOp(t, c, 0x04, `{"op_id": 15, "ops": [`+bmm+", "+gemm+", "+bmm+", "+gemm+`]}`, &resp)
	require.Len(t, resp.Results, 4)
	return resp.Results
}

// TestBatchedMatmulGPUThroughTheBinary: `serve --model gpu --preset h100-sxm` times a
// batched matmul as one kernel (an entry of batch 12 in the frame's GEMM_LIST), its
// cycles what `estimate BxMxNxK` prints, fewer than batch × the single GEMM's; INFO names
// the model and preset.
func TestBatchedMatmulGPUThroughTheBinary(t *testing.T) {
	const batch, m, n, k = 12, 64, 48, 32
	model := []string{"--model", "gpu", "--preset", "h100-sxm"}
	p := start(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, model...)...)
	want := estimate(t, append(model, fmt.Sprintf("%dx%dx%dx%d", batch, m, n, k), fmt.Sprintf("%dx%dx%d", m, n, k))...)
	require.Len(t, want, 2)
	got := timeBMM(t, p.listenAddr("tcpfront"), batch, m, n, k)
	for i, r := range got {
		w := want[i%2]
		assert.True(t, r.Timed, "entry %d: %s", i, r.UntimedReason)
		assert.Equal(t, "gpu", r.Model)
		assert.Equal(t, w.Cycles, r.Cycles, "entry %d", i)
		assert.Equal(t, w.MemoryBytes, r.MemoryBytes, "entry %d", i)
		assert.Equal(t, w.FLOPs, r.FLOPs, "entry %d", i)
		assert.Equal(t, 1, r.Requests, "entry %d", i)
	}
	for i, r := range got {
		assert.Equal(t, "gemm_list", r.TimingRequest, "entry %d: the frame's two distinct batches go as one GEMM_LIST", i)
	}
	assert.Equal(t, uint64(batch), got[0].GEMMs)
	assert.Less(t, got[0].Cycles, batch*got[1].Cycles, "one kernel, not batch kernels")

	c, err := net.Dial("tcp", p.listenAddr("tcpfront"))
	require.NoError(t, err)
	defer c.Close()
	var info map[string]any
	jsonOp(t, c, 0x05, `{"op_id": 2}`, &info)
	assert.Equal(t, "gpu", info["model"])
	assert.Equal(t, "h100-sxm", info["preset"])
	gpu, ok := info["gpu"].(map[string]any)
	require.True(t, ok, "INFO's gpu object: %v", info["gpu"])
	assert.Equal(t, 132.0, gpu["sms"], "H100 SXM5: 132 SMs")
	assert.Equal(t, 1.98, gpu["clock_ghz"])
	assert.Equal(t, 3350.0, gpu["hbm_gbps"])
	assert.NotEmpty(t, gpu["tiles"])
	assert.NotEmpty(t, gpu["batched_tiles"])
}

// TestBatchedMatmulBehindTutorialSST: the tutorial's component answers BATCHED_GEMM
// INVALID, and GEMM_LIST too; the frame's batches are then sent one request each and a
// batch is timed as one GEMM × count (its roofline's cycles), the op that found out
// included, and the refused requests counted.
func TestBatchedMatmulBehindTutorialSST(t *testing.T) {
	const batch, m, n, k = 12, 64, 48, 32
	sock := filepath.Join(t.TempDir(), "sst.sock")
	fake, err := refsst.Listen(sock, refsst.Tutorial)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fake.Close() })
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--sst-socket", sock)
	one, _, _, _ := refsst.TutorialGEMMCycles(m, n, k, 4)
	got := timeBMM(t, p.listenAddr("tcpfront"), batch, m, n, k)
	for i, r := range got {
		assert.True(t, r.Timed, "entry %d: %s", i, r.UntimedReason)
		assert.Equal(t, "gemm", r.TimingRequest, "entry %d", i)
		if i%2 == 0 {
			assert.Equal(t, batch*one, r.Cycles, "entry %d: GEMM × count", i)
		} else {
			assert.Equal(t, one, r.Cycles, "entry %d", i)
		}
		assert.Equal(t, 1, r.Requests, "entry %d: one distinct batch each", i)
	}
	// Logged by the device server when it finds out; the pipe may deliver it after the answer.
	for _, req := range []string{"BATCHED_GEMM", "GEMM_LIST"} {
		prefix := "the device does not know " + req + ":"
		p.waitFor(10*time.Second, prefix, func(m map[string]any) bool {
			msg, _ := m["message"].(string)
			return strings.HasPrefix(msg, prefix)
		})
	}
}
