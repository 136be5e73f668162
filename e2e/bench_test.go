package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// Benchmarks of the built binary as a process: how soon `sstemu serve` accepts connections
// (target 8 of docs/performance.md) and how much memory one large op costs it (target 6).
// Run them on their own:
//
//	go test -run '^$' -bench 'ServeStartup|ServePeakMemory' -benchtime 20x -count 5 ./e2e

// benchWait bounds every wait on a benchmarked process.
const benchWait = 30 * time.Second

// mib is one mebibyte.
const mib = 1 << 20

// benchServe is one `sstemu serve` process started by a benchmark.
type benchServe struct {
	cmd  *exec.Cmd
	addr string // the DeviceGEMM front end's address, from its "listening" log line
}

// startServe execs `sstemu serve --listen 127.0.0.1:0` with JSON logs and returns once its
// "listening" line has been read, or fails.
func startServe(b *testing.B) *benchServe {
	b.Helper()
	cmd := exec.Command(sstemuBin, "serve", "--listen", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &benchServe{cmd: cmd}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l struct{ Message, Layer, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "listening" && l.Layer == "tcpfront" {
				found <- l.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // keep the pipe drained until the process exits
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			s.kill()
			b.Fatal("sstemu serve exited without logging its listening address")
		}
		s.addr = addr
	case <-time.After(benchWait):
		s.kill()
		b.Fatalf("sstemu serve did not log its listening address within %v", benchWait)
	}
	return s
}

// kill ends the process at once (SIGKILL) and reaps it.
func (s *benchServe) kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// procStatusKiB reads the fields (e.g. "VmRSS", "VmHWM") of /proc/PID/status, in KiB.
func procStatusKiB(pid int, fields ...string) (map[string]int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	got := make(map[string]int64, len(fields))
	for line := range bytes.Lines(raw) {
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || !slices.Contains(fields, name) {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		got[name] = kib
	}
	for _, f := range fields {
		if _, ok := got[f]; !ok {
			return nil, fmt.Errorf("/proc/%d/status has no %s", pid, f)
		}
	}
	return got, nil
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 1 {
		return xs[n/2]
	}
	n := len(xs)
	return (xs[n/2-1] + xs[n/2]) / 2
}

// BenchmarkServeStartup is target (8): from exec of `sstemu serve --listen 127.0.0.1:0` to
// the first successful TCP connect to its front end. ns/op is that time (the kill and reap
// are outside the timer); startup-ms is the median over the iterations.
func BenchmarkServeStartup(b *testing.B) {
	var ms []float64
	for b.Loop() {
		t0 := time.Now()
		s := startServe(b)
		nc, err := net.DialTimeout("tcp", s.addr, benchWait)
		elapsed := time.Since(t0)
		b.StopTimer()
		if err != nil {
			s.kill()
			b.Fatalf("connecting to %s: %v", s.addr, err)
		}
		_ = nc.Close()
		s.kill()
		ms = append(ms, float64(elapsed)/float64(time.Millisecond))
		b.StartTimer()
	}
	b.ReportMetric(median(ms), "startup-ms")
}

// BenchmarkServePeakMemory1024 is target (6): a fresh `sstemu serve` per iteration, its
// VmRSS read from /proc when idle (listening, no op yet), then one 1024³ GEMM over TCP, then
// its VmHWM (peak resident set). Reports the medians of the peak above idle, and of that
// over the op's 12 MiB of tensors (A, B and C, 4 MiB each).
func BenchmarkServePeakMemory1024(b *testing.B) {
	const m, n, k = 1024, 1024, 1024
	tensorMiB := float64((m*k+k*n+m*n)*4) / mib
	r := rand.New(rand.NewPCG(1, 2))
	a, bm, out := randomMatrix(r, m*k), randomMatrix(r, k*n), make([]float32, m*n)
	var idle, peak, above []float64
	for b.Loop() {
		s := startServe(b)
		pid := s.cmd.Process.Pid
		before, err := procStatusKiB(pid, "VmRSS", "VmHWM")
		if err != nil {
			s.kill()
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), benchWait)
		c, err := loadgen.Dial(ctx, s.addr, loadgen.ClientOptions{})
		if err == nil {
			err = c.GEMM(ctx, m, n, k, a, bm, out)
			_ = c.Close()
		}
		cancel()
		if err != nil {
			s.kill()
			b.Fatal(err)
		}
		after, err := procStatusKiB(pid, "VmHWM")
		s.kill()
		if err != nil {
			b.Fatal(err)
		}
		idle = append(idle, float64(before["VmRSS"])/1024)
		peak = append(peak, float64(after["VmHWM"])/1024)
		above = append(above, float64(after["VmHWM"]-before["VmRSS"])/1024)
	}
	b.ReportMetric(median(idle), "idle-RSS-MiB")
	b.ReportMetric(median(peak), "peak-HWM-MiB")
	aboveMiB := median(above)
	b.ReportMetric(aboveMiB, "above-idle-MiB")
	b.ReportMetric(aboveMiB/tensorMiB, "above-idle/tensors")
}
