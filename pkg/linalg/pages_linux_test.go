//go:build linux

package linalg

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// numpyHugePageBytes is the size from which numpy advises an array's memory for
// transparent huge pages (numpy/core/src/multiarray/alloc.c, _npy_alloc_cache: madvise
// MADV_HUGEPAGE for ≥ 4 MiB, unless np.core.multiarray._set_madvise_hugepage(False)).
const numpyHugePageBytes = 4 << 20

// benchPagesEnv chooses the benchmarks' pages for large operands: "huge" (the default,
// numpy's own) or "4k" (numpy with its advice turned off, and sstemu's Go-heap tensors).
const benchPagesEnv = "SSTEMU_BENCH_PAGES"

// benchFloats returns n float32s allocated the way numpy allocates an array of them, so
// that a comparison with numpy runs on the same kind of pages: at least
// numpyHugePageBytes come from mapFloats advised for huge pages, fewer from the Go heap.
// With SSTEMU_BENCH_PAGES=4k every operand comes from the Go heap, as sstemu's tensors do
// (4 KiB pages where THP is in madvise mode).
func benchFloats(tb testing.TB, n int) []float32 {
	tb.Helper()
	switch pages := os.Getenv(benchPagesEnv); pages {
	case "", "huge":
	case "4k":
		return make([]float32, n)
	default:
		tb.Fatalf("%s=%q: want huge or 4k", benchPagesEnv, pages)
	}
	if n*4 < numpyHugePageBytes {
		return make([]float32, n)
	}
	return mapFloats(tb, n, true)
}

// mapFloats returns n float32s of an anonymous mapping (unmapped when tb ends), advised
// MADV_HUGEPAGE or MADV_NOHUGEPAGE before its first touch. As numpy, it ignores a refused
// advice (a kernel without THP): the pages are then 4 KiB.
func mapFloats(tb testing.TB, n int, huge bool) []float32 {
	tb.Helper()
	mem, err := syscall.Mmap(-1, 0, n*4, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		tb.Fatalf("mmap %d bytes: %v", n*4, err)
	}
	tb.Cleanup(func() { _ = syscall.Munmap(mem) })
	advice := syscall.MADV_NOHUGEPAGE
	if huge {
		advice = syscall.MADV_HUGEPAGE
	}
	_ = syscall.Madvise(mem, advice)
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[0])), n)
}

// BenchmarkSgemvPages measures the memory-bound 1×4096×4096 product (sgemv, 64 MiB of B
// per call) with B on 4 KiB pages and on huge pages, call by call alternately, so both
// see the same machine: what numpy's huge-page advice is worth to the one benchmark shape
// that streams B from memory.
func BenchmarkSgemvPages(b *testing.B) {
	const m, n, k = 1, 4096, 4096
	x, c := randSlice(1, m*k), make([]float32, m*n)
	small, huge := mapFloats(b, k*n, false), mapFloats(b, k*n, true)
	fillRand(2, small)
	fillRand(2, huge)
	var onSmall, onHuge time.Duration
	for b.Loop() {
		t0 := time.Now()
		Sgemm(m, n, k, x, small, c)
		t1 := time.Now()
		Sgemm(m, n, k, x, huge, c)
		onSmall += t1.Sub(t0)
		onHuge += time.Since(t1)
	}
	gflops := func(d time.Duration) float64 { return 2 * m * n * k * float64(b.N) / d.Seconds() / 1e9 }
	b.ReportMetric(gflops(onSmall), "4k-GFLOPS")
	b.ReportMetric(gflops(onHuge), "huge-GFLOPS")
	b.ReportMetric(onSmall.Seconds()/onHuge.Seconds(), "huge/4k-speed")
	b.ReportMetric(float64(hugePageKiB(b, unsafe.Pointer(&huge[0])))/1024, "huge-MiB")
}

// hugePageKiB is the AnonHugePages of the mapping that holds p, from /proc/self/smaps.
func hugePageKiB(tb testing.TB, p unsafe.Pointer) int {
	tb.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		tb.Skipf("no smaps: %v", err)
	}
	addr := uint64(uintptr(p))
	in := false
	for line := range strings.Lines(string(smaps)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && l <= addr && addr < h
			continue
		}
		if in && fields[0] == "AnonHugePages:" && len(fields) >= 2 {
			kib, err := strconv.Atoi(fields[1])
			if err != nil {
				tb.Fatalf("smaps line %q: %v", line, err)
			}
			return kib
		}
	}
	tb.Fatalf("no mapping in smaps holds %#x", addr)
	return 0
}

// TestBenchFloatsPages checks that benchFloats gives large operands huge pages, as numpy
// gives its arrays, where the kernel has transparent huge pages for advised memory; and,
// where only advised memory gets them (madvise mode), that small operands and
// SSTEMU_BENCH_PAGES=4k stay on 4 KiB pages.
func TestBenchFloatsPages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("no transparent huge pages for advised memory (%q, %v)", mode, err)
	}
	onlyAdvised := strings.Contains(string(mode), "[madvise]")
	const large = 16 << 20 / 4 // 16 MiB: at least one aligned 2 MiB page whatever the address
	for _, tc := range []struct {
		name, pages string
		n           int
		huge        bool
	}{
		{"large", "", large, true},
		{"below numpy's 4 MiB", "", numpyHugePageBytes/4 - 1, false},
		{"large with 4k", "4k", large, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(benchPagesEnv, tc.pages)
			s := benchFloats(t, tc.n)
			require.Len(t, s, tc.n)
			fillRand(1, s)
			kib := hugePageKiB(t, unsafe.Pointer(&s[0]))
			switch {
			case tc.huge:
				require.GreaterOrEqual(t, kib, 2048, "AnonHugePages (KiB) of the operand's mapping")
			case onlyAdvised:
				require.Zero(t, kib, "AnonHugePages (KiB) of the operand's mapping")
			}
		})
	}
}
