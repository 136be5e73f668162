package main

import (
	"bytes"
	"encoding/binary"
	"io"
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
	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/perfmodel"
)

// specFromArgs runs the model flags through a CLI app and returns what they select.
func specFromArgs(t *testing.T, args ...string) (modelSpec, error) {
	t.Helper()
	var (
		spec    modelSpec
		specErr error
	)
	app := &cli.App{
		Name:  "test",
		Flags: modelFlags(),
		Action: func(c *cli.Context) error {
			spec, specErr = modelSpecFromFlags(c)
			return nil
		},
	}
	require.NoError(t, app.Run(append([]string{"test"}, args...)))
	return spec, specErr
}

func TestModelFlags(t *testing.T) {
	tutorial := perfmodel.Params{FLOPsPerCycle: 64, BandwidthGBps: 900, ClockGHz: 1.41}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, s modelSpec)
	}{
		{name: "defaults: the tutorial roofline", check: func(t *testing.T, s modelSpec) {
			assert.Equal(t, "a100-tutorial", s.Preset)
			assert.Equal(t, "roofline", s.Kind)
			assert.Equal(t, tutorial.FLOPsPerCycle, s.Params.FLOPsPerCycle)
			assert.Equal(t, tutorial.BandwidthGBps, s.Params.BandwidthGBps)
			assert.Equal(t, tutorial.ClockGHz, s.Params.ClockGHz)
		}},
		{name: "systolic with array and dataflow", args: []string{"--model", "systolic", "--array", "64x32", "--dataflow", "ws"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, "systolic", s.Kind)
				assert.Equal(t, uint64(64), s.Params.ArrayRows)
				assert.Equal(t, uint64(32), s.Params.ArrayCols)
				assert.Equal(t, perfmodel.WeightStationary, s.Params.Dataflow)
			}},
		{name: "systolic SCALE-Sim memory", args: []string{"--preset", "tpu-128", "--sram-kb", "64x32x0", "--interface-bandwidth", "user", "--dram-words-per-cycle", "16"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, []uint64{64, 32, 0}, []uint64{s.Params.IfmapSRAMKB, s.Params.FilterSRAMKB, s.Params.OfmapSRAMKB})
				assert.Equal(t, perfmodel.BandwidthUser, s.Params.InterfaceBandwidth)
				assert.Equal(t, uint64(16), s.Params.DRAMWordsPerCycle)
			}},
		{name: "preset picks its kind", args: []string{"--preset", "tpu-128"}, check: func(t *testing.T, s modelSpec) {
			assert.Equal(t, "systolic", s.Kind)
		}},
		{name: "numeric overrides", args: []string{"--flops-per-cycle", "128", "--bandwidth-gbps", "1000", "--model-clock", "2GHz"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, uint64(128), s.Params.FLOPsPerCycle)
				assert.Equal(t, 1000.0, s.Params.BandwidthGBps)
				assert.Equal(t, 2.0, s.Params.ClockGHz)
			}},
		{name: "tiled overrides", args: []string{"--model", "tiled", "--tile", "128x64X32", "--cycles-per-tile", "99"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, "tiled", s.Kind)
				assert.Equal(t, []uint64{128, 64, 32, 99}, []uint64{s.Params.TileM, s.Params.TileN, s.Params.TileK, s.Params.CyclesPerTile})
			}},
		{name: "gpu model on the h100-sxm preset", args: []string{"--model", "gpu", "--preset", "h100-sxm",
			"--model-param", "gpu_sms=100", "--model-param", "gpu_kernel_ns = 2500"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, "gpu", s.Kind)
				assert.Equal(t, []uint64{100, 256, 2500}, []uint64{s.Params.GPU.SMs, s.Params.GPU.FP32FLOPsPerSM, s.Params.GPU.KernelNs})
			}},
		{name: "gpu preset picks the gpu model", args: []string{"--preset", "a100-pcie-40gb"}, check: func(t *testing.T, s modelSpec) {
			assert.Equal(t, "gpu", s.Kind)
		}},
		{name: "environment", env: map[string]string{"SSTEMU_MODEL": "tiled", "SSTEMU_ARRAY": "8x8"},
			check: func(t *testing.T, s modelSpec) {
				assert.Equal(t, "tiled", s.Kind)
				assert.Equal(t, uint64(8), s.Params.ArrayRows)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s, err := specFromArgs(t, tt.args...)
			require.NoError(t, err)
			tt.check(t, s)
		})
	}
	for _, tt := range []struct {
		args []string
		want string // in the error message
	}{
		{[]string{"--preset", "nope"}, "--preset"}, {[]string{"--model", "quantum"}, "--model"},
		{[]string{"--array", "12"}, "--array"}, {[]string{"--array", "0x4"}, "--array"}, {[]string{"--array", "4x-4"}, "--array"},
		{[]string{"--dataflow", "diagonal"}, "--dataflow"}, {[]string{"--model-clock", "1"}, "--model-clock"},
		{[]string{"--model-param", "gpu_sms"}, "--model-param"}, {[]string{"--model-param", "warp_size=32"}, "--model-param"},
		{[]string{"--model-param", "gpu_sms=-1"}, "--model-param"}, {[]string{"--model-param", "gpu_tiles=0"}, "--model-param"},
		{[]string{"--flops-per-cycle", "0"}, "FLOPsPerCycle"}, {[]string{"--tile", "1x2"}, "--tile"},
		{[]string{"--sram-kb", "1x2"}, "--sram-kb"}, {[]string{"--interface-bandwidth", "fast"}, "--interface-bandwidth"},
		{[]string{"--model", "systolic", "--sram-kb", "1x1x2000000000"}, "SRAM size"},
	} {
		t.Run("reject "+strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := specFromArgs(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestSSTCommand runs the built binary: it answers a GEMM on its socket, refuses a second
// instance on the same socket, and on SIGTERM prints the statistics, writes the CSV,
// removes the socket and exits 0.
func TestSSTCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sstemu")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	sock, csvPath := filepath.Join(dir, "sst.sock"), filepath.Join(dir, "stats.csv")
	p := startSST(t, bin, sock, append(os.Environ(), "SSTEMU_SOCKET="+sock),
		"sst", "--stats-csv", csvPath, "--name", "virtio_llama", "--clock", "2GHz")
	req := make([]byte, 4104)
	binary.LittleEndian.PutUint32(req[0:], 8) // GEMM 4×16×8, float32
	binary.LittleEndian.PutUint64(req[8:], 77)
	for off, v := range map[int]uint32{24: 4, 28: 16, 32: 8, 36: 4} {
		binary.LittleEndian.PutUint32(req[off:], v)
	}
	resp := p.exchange(t, req)
	assert.Equal(t, uint64(77), binary.LittleEndian.Uint64(resp[8:]))
	assert.Equal(t, uint64(16), binary.LittleEndian.Uint64(resp[24:]), "16 cycles")

	// COMPUTE as the reference answers it: 100 cycles a unit whatever latency_model says.
	req = make([]byte, 4104)
	binary.LittleEndian.PutUint32(req[0:], 2)
	binary.LittleEndian.PutUint64(req[8:], 78)
	binary.LittleEndian.PutUint64(req[24:], 5) // compute_units
	binary.LittleEndian.PutUint32(req[32:], 3) // latency_model
	resp = p.exchange(t, req)
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(resp[16:]), "status OK")
	assert.Equal(t, uint64(500), binary.LittleEndian.Uint64(resp[24:]), "5 units × 100 cycles")

	second := exec.Command(bin, "sst", "--socket", sock)
	out, err := second.CombinedOutput()
	assert.Error(t, err, "a second instance on a live socket fails")
	assert.Contains(t, string(out), "live process")

	p.stop(t)
	assert.Contains(t, p.stdout.String(), "VirtIODevice[virtio_llama:finish]   Total requests: 2\n")
	assert.Contains(t, p.stdout.String(), "VirtIODevice[virtio_llama:finish]   GEMM requests: 1\n")
	assert.Contains(t, p.stdout.String(), "Simulation is complete, simulated time: 258 ns\n", "516 cycles at 2 GHz")
	assert.NoFileExists(t, sock)
	data, err := os.ReadFile(csvPath)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "ComponentName, StatisticName, StatisticSubId, StatisticType, SimTime, Rank, Sum.u64, SumSQ.u64, Count.u64, Min.u64, Max.u64\n"))
	assert.Contains(t, string(data), "virtio_llama, gemm_cycles, , Accumulator, 258000, 0, 16, 256, 1, 16, 16\n")
	assert.Contains(t, string(data), "virtio_llama, compute_cycles, , Accumulator, 258000, 0, 500, 250000, 1, 500, 500\n")

	t.Run("gpu model on h100-sxm answers BATCHED_GEMM", func(t *testing.T) { sstGPU(t, bin, filepath.Join(dir, "gpu.sock")) })
}

// sstGPU runs `sstemu sst --model gpu --preset h100-sxm` and checks its answer to a
// BATCHED_GEMM of 12 GEMMs of 64×48×32 against perfmodel.EstimateBatched.
func sstGPU(t *testing.T, bin, sock string) {
	p := startSST(t, bin, sock, nil, "sst", "--model", "gpu", "--preset", "h100-sxm", "--socket", sock)
	req := make([]byte, 4104)
	binary.LittleEndian.PutUint32(req[0:], 9) // BATCHED_GEMM
	binary.LittleEndian.PutUint64(req[8:], 90)
	for off, v := range map[int]uint32{24: 64, 28: 48, 32: 32, 36: 4} {
		binary.LittleEndian.PutUint32(req[off:], v)
	}
	binary.LittleEndian.PutUint64(req[40:], 12)
	resp := p.exchange(t, req)
	preset, err := perfmodel.LookupPreset("h100-sxm")
	require.NoError(t, err)
	model, err := perfmodel.New(perfmodel.KindGPU, preset.Params)
	require.NoError(t, err)
	want, err := perfmodel.EstimateBatched(model, perfmodel.Op{M: 64, N: 48, K: 32, DtypeSize: 4}, 12)
	require.NoError(t, err)
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(resp[0:]), "status OK")
	assert.Equal(t, want.Cycles, binary.LittleEndian.Uint64(resp[24:]), "result")
	assert.Equal(t, want.Cycles, binary.LittleEndian.Uint64(resp[32:]), "cycles")
	assert.Equal(t, want.MemoryBytes, binary.LittleEndian.Uint64(resp[56:]), "memory bytes")
	p.stop(t)
	assert.Contains(t, p.stdout.String(), "GEMM model: gpu\n")
	assert.Contains(t, p.stdout.String(), "Batches of equal GEMMs (BATCHED_GEMM requests, GEMM_LIST entries): 1, carrying 12 GEMMs\n")
}

// sstProcess is a running `sstemu sst` with its output captured and a connection to its
// socket.
type sstProcess struct {
	cmd            *exec.Cmd
	conn           net.Conn
	stdout, stderr bytes.Buffer
}

// startSST runs bin with args and environment env (nil: this process's), waits for the
// socket sock to appear and connects to it; the test's cleanup kills the process and
// closes the connection.
func startSST(t *testing.T, bin, sock string, env []string, args ...string) *sstProcess {
	t.Helper()
	p := &sstProcess{cmd: exec.Command(bin, args...)}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, 10*time.Millisecond)
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	p.conn = c
	return p
}

// exchange sends one request frame and returns the response frame.
func (p *sstProcess) exchange(t *testing.T, req []byte) []byte {
	t.Helper()
	_, err := p.conn.Write(req)
	require.NoError(t, err)
	resp := make([]byte, 4112)
	_, err = io.ReadFull(p.conn, resp)
	require.NoError(t, err)
	return resp
}

// stop sends SIGTERM and requires exit status 0.
func (p *sstProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), "exit 0 on SIGTERM; stderr: %s", p.stderr.String())
}

func TestParseComputeCosts(t *testing.T) {
	costs, err := parseComputeCosts("")
	require.NoError(t, err)
	assert.Nil(t, costs, "empty: the reference's cost")
	costs, err = parseComputeCosts("100, 50,10,1")
	require.NoError(t, err)
	assert.Equal(t, []uint64{100, 50, 10, 1}, costs)
	for _, bad := range []string{"100,,1", "-1", "1.5", "x"} {
		_, err := parseComputeCosts(bad)
		assert.Error(t, err, bad)
	}
}
