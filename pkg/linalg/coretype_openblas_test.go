//go:build cgo && !noopenblas

package linalg

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/cputime"
)

// TestCoreChoice checks the kernel choice in the environment the tests run in, without
// changing it: a user's OPENBLAS_CORETYPE is what OpenBLAS runs; an automatic choice is
// what OpenBLAS runs and never appears in Go's environment.
func TestCoreChoice(t *testing.T) {
	info := Kernels()
	user := os.Getenv("OPENBLAS_CORETYPE")
	switch {
	case user != "":
		assert.Equal(t, CoreUser, info.Source)
		assert.Equal(t, user, info.Requested)
	case info.Source == CoreAuto:
		assert.True(t, strings.EqualFold(info.Requested, info.Core), "asked for %q, OpenBLAS runs %q", info.Requested, info.Core)
		_, leaked := os.LookupEnv("OPENBLAS_CORETYPE")
		assert.False(t, leaked, "the automatic choice is in Go's environment")
	default:
		assert.Equal(t, CoreOpenBLAS, info.Source)
		assert.Empty(t, info.Requested)
	}
	assert.Contains(t, info.Backend, "core="+info.Core)
}

// childEnv marks the test binary run by TestCoreUserValue.
const childEnv = "SSTEMU_LINALG_CORE_CHILD"

// TestCoreUserValue runs this test binary again with OPENBLAS_CORETYPE=Prescott (SSE3,
// the baseline kernels every x86-64 CPU runs) and checks, in the child, that the value is
// the one OpenBLAS uses and is reported as the user's. It only runs where the variable is
// unset, so a value the machine sets is never replaced.
func TestCoreUserValue(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		info := Kernels()
		require.Equal(t, CoreUser, info.Source)
		require.Equal(t, "Prescott", info.Requested)
		require.True(t, strings.EqualFold(info.Core, "Prescott"), "OpenBLAS runs %q", info.Core)
		require.False(t, info.Fallback, info.CheckError)
		return
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("Prescott is an x86-64 kernel set")
	}
	runChild(t, "TestCoreUserValue", childEnv, "OPENBLAS_CORETYPE", "Prescott")
}

// runChild runs test alone in this test binary again with marker set and the variable
// name=value, and fails unless it passes there. It runs only where name is unset, so a
// value the machine sets is never replaced.
func runChild(t *testing.T, test, marker, name, value string) {
	t.Helper()
	if _, set := os.LookupEnv(name); set {
		t.Skipf("%s is set here; the in-process test checks it is kept", name)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), marker+"=1", name+"="+value)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "PASS")
}

// emptyChildEnv marks the test binary run by TestCoreEmptyValue.
const emptyChildEnv = "SSTEMU_LINALG_CORE_EMPTY_CHILD"

// TestCoreEmptyValue runs this test binary again with OPENBLAS_CORETYPE set but empty (as
// `export OPENBLAS_CORETYPE=$UNSET` leaves it), which OpenBLAS ignores: it is not the user's
// choice, so the automatic one (or OpenBLAS's own) applies.
func TestCoreEmptyValue(t *testing.T) {
	if os.Getenv(emptyChildEnv) != "" {
		info := Kernels()
		require.NotEqual(t, CoreUser, info.Source, "an empty OPENBLAS_CORETYPE counted as the user's choice")
		require.NotEmpty(t, info.Core)
		require.False(t, info.Fallback, info.CheckError)
		return
	}
	runChild(t, "TestCoreEmptyValue", emptyChildEnv, "OPENBLAS_CORETYPE", "")
}

// TestThreadTimeoutChoice checks the idle-spin bound OpenBLAS runs with, in the
// environment the tests run in: a user's OPENBLAS_THREAD_TIMEOUT is kept (as OpenBLAS
// clamps it); otherwise sstemu's, which OpenBLAS itself reports having read. Had the
// automatic value reached Go's environment, it would show here as a user's value and
// fail the first check.
func TestThreadTimeoutChoice(t *testing.T) {
	info := Kernels()
	if user := os.Getenv("OPENBLAS_THREAD_TIMEOUT"); user != "" {
		assert.Equal(t, CoreUser, info.ThreadTimeoutSource, "OPENBLAS_THREAD_TIMEOUT=%s in Go's environment", user)
		return
	}
	assert.Equal(t, CoreAuto, info.ThreadTimeoutSource)
	assert.Equal(t, autoThreadTimeout, info.ThreadTimeout)
}

// timeoutChildEnv marks the test binary run by TestThreadTimeoutUserValue.
const timeoutChildEnv = "SSTEMU_LINALG_TIMEOUT_CHILD"

// TestThreadTimeoutUserValue runs this test binary again with OPENBLAS_THREAD_TIMEOUT=2,
// below OpenBLAS's lower bound: the child must run the user's value, clamped as OpenBLAS
// clamps it (to 4), reported as the user's.
func TestThreadTimeoutUserValue(t *testing.T) {
	if os.Getenv(timeoutChildEnv) != "" {
		info := Kernels()
		require.Equal(t, CoreUser, info.ThreadTimeoutSource)
		require.Equal(t, openBLASMinThreadTimeout, info.ThreadTimeout)
		return
	}
	runChild(t, "TestThreadTimeoutUserValue", timeoutChildEnv, "OPENBLAS_THREAD_TIMEOUT", "2")
}

// idleCPUAfterThreadedGEMM runs one GEMM large enough for OpenBLAS to use its worker
// threads, then sleeps for window and returns the CPU time the process used while it
// slept: what the idle workers spent spinning (the Go runtime's own is far smaller).
func idleCPUAfterThreadedGEMM(t testing.TB, window time.Duration) time.Duration {
	const n = 256 // 256³ = 16.8M multiply–adds, far above OpenBLAS's threading threshold
	x, y, c := randSlice(1, n*n), randSlice(2, n*n), make([]float32, n*n)
	Sgemm(n, n, n, x, y, c)
	before := cputime.Of(t)
	time.Sleep(window)
	return cputime.Of(t) - before
}

// TestIdleWorkersSleep checks that OpenBLAS's workers stop spinning soon after a threaded
// GEMM: within 200 ms of idling the process uses under 25 ms of CPU per worker. With OpenBLAS's
// default bound (2^28 TSC ticks, ≈ 0.1 s here) each worker spins through most of the
// window (`OPENBLAS_THREAD_TIMEOUT=28 go test -run '^$' -bench IdleSpin`: ≈ 100 ms of CPU
// per worker), with sstemu's a few ms. Skipped where the user set the bound or OpenBLAS
// runs no worker threads.
func TestIdleWorkersSleep(t *testing.T) {
	info := Kernels()
	if info.Fallback || info.ThreadTimeoutSource != CoreAuto {
		t.Skipf("OpenBLAS's idle-spin bound is not sstemu's here (%s, fallback %v)", info.ThreadTimeoutSource, info.Fallback)
	}
	if openBLASThreads() < 2 {
		t.Skip("OpenBLAS runs no worker threads here")
	}
	// 25 ms per worker: sstemu's bound is 8.4 ms even at a 2 GHz TSC, OpenBLAS's ≥ 67 ms
	// even at 4 GHz; 10 ms more for the Go runtime's own.
	const window = 200 * time.Millisecond
	most := time.Duration(openBLASThreads()-1)*25*time.Millisecond + 10*time.Millisecond
	busy := idleCPUAfterThreadedGEMM(t, window)
	assert.Less(t, busy, most, "CPU used in %v of idling after a threaded GEMM", window)
}

// BenchmarkIdleSpin reports the CPU the process uses in the 200 ms after a threaded GEMM
// (idle-cpu-ms): run it with OPENBLAS_THREAD_TIMEOUT=28 for OpenBLAS's default bound.
func BenchmarkIdleSpin(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		total += idleCPUAfterThreadedGEMM(b, 200*time.Millisecond)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "idle-cpu-ms")
	b.ReportMetric(float64(Kernels().ThreadTimeout), "thread-timeout")
}
