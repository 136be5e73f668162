package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
	"github.com/sstemu/sstemu/pkg/optrace"
)

func randomMatrix(r *rand.Rand, n int) []float32 {
	m := make([]float32, n)
	for i := range m {
		m[i] = float32(r.Float64()*2 - 1)
	}
	return m
}

// gemmTolerance is the largest |C − C64| accepted for an element of a float32 GEMM with K
// terms of magnitude sum mag: float32 accumulation error grows at most like K·ε·Σ|a·b|;
// blocked kernels do far better, so 1e-5·mag (≈ 84·ε) is ample for K ≤ 4096 and still
// catches any wrong element (a misplaced or missing term is O(|a·b|), not O(ε)).
func gemmTolerance(mag float64) float64 { return 1e-5*mag + 1e-30 }

// checkGEMM fails the test (from the test goroutine only) when c is not A·B.
func checkGEMM(t *testing.T, m, n, k int, a, b, c []float32) {
	t.Helper()
	if err := gemmErr(m, n, k, a, b, c); err != nil {
		t.Fatal(err)
	}
}

func dial(t *testing.T, addr string, pieces bool) *loadgen.Client {
	t.Helper()
	c, err := loadgen.Dial(withTimeout(t, 5*time.Second), addr, loadgen.ClientOptions{Pieces: pieces})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func gemm(t *testing.T, c *loadgen.Client, r *rand.Rand, m, n, k int) {
	t.Helper()
	a, b := randomMatrix(r, m*k), randomMatrix(r, k*n)
	out := make([]float32, m*n)
	require.NoError(t, c.GEMM(withTimeout(t, 60*time.Second), m, n, k, a, b, out), "%dx%dx%d", m, n, k)
	checkGEMM(t, m, n, k, a, b, out)
}

func isOp(m map[string]any) bool { return m["message"] == "op" }

func TestServeShapesAndCycles(t *testing.T) {
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--log-level", "debug")
	addr := p.listenAddr("tcpfront")
	r := rand.New(rand.NewPCG(1, 1))
	shapes := [][3]int{{1, 1, 1}, {4, 16, 8}, {3, 5, 7}, {1, 4096, 33}, {129, 1, 65}, {31, 37, 41}, {1024, 1024, 1024}}
	for _, pieces := range []bool{false, true} {
		c := dial(t, addr, pieces)
		for _, s := range shapes {
			gemm(t, c, r, s[0], s[1], s[2])
		}
	}
	// Every op's cycles show in the debug log: 4×16×8 under the tutorial roofline is 16
	// cycles (1024 FLOP / 64), 1024³ is 2·1024³/64 = 33554432.
	l := p.waitFor(5*time.Second, "the 4x16x8 op", func(m map[string]any) bool {
		shape, _ := m["shape"].([]any)
		return isOp(m) && len(shape) == 2 && shape[0] == 4.0 && shape[1] == 16.0
	})
	assert.Equal(t, 16.0, l["cycles"])
	l = p.waitFor(5*time.Second, "the 1024³ op", func(m map[string]any) bool {
		shape, _ := m["shape"].([]any)
		return isOp(m) && len(shape) == 2 && shape[0] == 1024.0 && shape[1] == 1024.0
	})
	assert.Equal(t, 33554432.0, l["cycles"])
	assert.Equal(t, 2*len(shapes), p.count(isOp))

	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second), "SIGTERM exits 0")
	out := p.output()
	assert.Contains(t, out, fmt.Sprintf("device server: %d ops, %d timed", 2*len(shapes), 2*len(shapes)))
	assert.Contains(t, out, fmt.Sprintf("GEMM requests: %d", 2*len(shapes)))
}

func TestServeConcurrentConnections(t *testing.T) {
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--devices", "4")
	addr := p.listenAddr("tcpfront")
	const conns, ops = 32, 40
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() { // reports with assert and returns: FailNow is for the test goroutine only
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			ctx := withTimeout(t, time.Minute)
			c, err := loadgen.Dial(ctx, addr, loadgen.ClientOptions{Pieces: i%2 == 0})
			if !assert.NoError(t, err) {
				return
			}
			defer c.Close()
			for j := 0; j < ops; j++ {
				if _, err := randomGEMM(ctx, c, r, 1+r.IntN(24), 1+r.IntN(24), 1+r.IntN(24)); !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
	out := p.output()
	assert.Contains(t, out, fmt.Sprintf("device server: %d ops, %d timed, 0 untimed", conns*ops, conns*ops))
	assert.Contains(t, out, fmt.Sprintf("GEMM requests: %d", conns*ops), "one in-process SST behind all four devices")
	for d := 0; d < 4; d++ {
		assert.Regexp(t, fmt.Sprintf(`/dev/sst%d: [1-9]\d* writes`, d), out, "ops are spread over every device")
	}
}

// frame builds a DeviceGEMM request by hand, as docs/wire.md §Request frame lays it out.
func frame(op byte, json string, tensors ...[]byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(0xDEADBEEF))
	binary.Write(&b, binary.BigEndian, uint32(len(json)))
	b.WriteByte(op)
	b.WriteString(json)
	for _, t := range tensors {
		binary.Write(&b, binary.BigEndian, uint32(len(t)))
		b.Write(t)
	}
	return b.Bytes()
}

// The malformed requests once tested here are part of TestHostileInput's table
// (hostile_test.go), which also checks each one's log line and keeps a good client running.

func TestServeWithExternalSST(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sst.sock")
	sst := start(t, "sst", "--socket", sock)
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, 10*time.Millisecond)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--sst-socket", sock)
	addr := p.listenAddr("tcpfront")
	c := dial(t, addr, false)
	r := rand.New(rand.NewPCG(5, 5))
	const ops = 25
	for i := 0; i < ops; i++ {
		gemm(t, c, r, 4, 16, 8)
	}
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
	assert.Contains(t, p.output(), fmt.Sprintf("device server: %d ops, %d timed", ops, ops))
	require.NoError(t, sst.signal(syscall.SIGTERM, 10*time.Second))
	out := sst.output()
	assert.Contains(t, out, fmt.Sprintf("GEMM requests: %d", ops), "the external SST received every GEMM")
	assert.Contains(t, out, fmt.Sprintf("Cycles: %d (compute %d, memory %d)", 16*ops, 16*ops, ops), "4×16×8 roofline: 16 compute cycles, 1 memory cycle")
}

// TestTimeListsThroughExternalSST: a TIME frame of 300 distinct shapes reaches an external
// `sstemu sst` as three GEMM_LISTs (127 + 127 + 46 entries) over the socket; every entry's
// cycles are what `sstemu estimate` prints, and the component simulated 300 GEMMs.
func TestTimeListsThroughExternalSST(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sst.sock")
	sst := start(t, "sst", "--socket", sock)
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, 10*time.Millisecond)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--sst-socket", sock)
	const n = 300
	var js, shapes []string
	for m := 1; m <= n; m++ {
		js = append(js, fmt.Sprintf(`{"op": "gemm", "M": %d, "N": 64, "K": 32}`, m))
		shapes = append(shapes, fmt.Sprintf("%dx64x32", m))
	}
	want := estimate(t, shapes...)
	c, err := net.Dial("tcp", p.listenAddr("tcpfront"))
	require.NoError(t, err)
	defer c.Close()
	var resp struct {
		Results []optrace.WireRecord `json:"results"`
	}
	jsonOp(t, c, 0x04, `{"op_id": 3, "ops": [`+strings.Join(js, ", ")+`]}`, &resp)
	require.Len(t, resp.Results, n)
	for i, r := range resp.Results {
		require.True(t, r.Timed, "entry %d: %s %s", i, r.UntimedReason, r.Error)
		assert.Equal(t, want[i].Cycles, r.Cycles, "entry %d (%s)", i, shapes[i])
		assert.Equal(t, "gemm_list", r.TimingRequest, "entry %d", i)
	}
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
	require.NoError(t, sst.signal(syscall.SIGTERM, 10*time.Second))
	out := sst.output()
	assert.Contains(t, out, "GEMM_LIST requests: 3\n", "three lists crossed the socket")
	assert.Contains(t, out, fmt.Sprintf("GEMMs simulated: %d\n", n))
}

func TestPyTorchClient(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		t.Skipf("SKIPPED: %s cannot import torch and numpy (%v); install python3-torch to run the real PyTorch client", python, err)
	}
	p := start(t, "serve", "--listen", "127.0.0.1:0")
	addr := p.listenAddr("tcpfront")
	for _, conns := range []string{"1", "8"} {
		cmd := exec.Command(python, "pyclient/device_gemm_client.py", addr, "--ops", "30", "--conns", conns)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.True(t, strings.Contains(string(out), " 0 errors"), "%s", out)
		t.Logf("%s", bytes.TrimSpace(out))
	}
}
