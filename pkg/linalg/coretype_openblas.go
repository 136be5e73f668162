//go:build cgo && !noopenblas

package linalg

// OpenBLAS (Debian's DYNAMIC_ARCH build) picks its kernels once, in its load-time
// constructor gotoblas_init: it reads OPENBLAS_CORETYPE or else matches the CPU's
// family/model against a table that 0.3.21 does not extend to newer CPUs, which then get
// SSE3 (Prescott) kernels several times slower than the AVX-512 ones they can run. With
// the archive linked statically the constructor runs before the Go runtime starts, so an
// os.Setenv in Go (even in an init function) comes too late, and OpenBLAS has no call to
// re-initialise. sstemu_choose_core is a C constructor of priority 101, which the linker
// runs before every default-priority constructor (OpenBLAS's included): if the user left
// OPENBLAS_CORETYPE unset (or empty, which OpenBLAS ignores too) it chooses a kernel set
// from the CPU's features (cpuid, with the OS's support for the AVX register state, via
// __builtin_cpu_supports; on other architectures it leaves the choice to OpenBLAS) and
// sets the variable in the C environment only. Go's os.Getenv and the environment of processes Go
// starts are Go's own copy, taken from the process's initial environment: they never see
// it, and linalg removes it from the C environment once OpenBLAS has read it.
//
// The same constructor bounds how long OpenBLAS's idle worker threads spin. After every
// threaded call they poll for the next job with sched_yield for 2^OPENBLAS_THREAD_TIMEOUT
// TSC ticks before sleeping: 2^28 by default, ≈ 0.1 s at 2.6 GHz, during which each
// worker keeps a core busy. In a server that answers a large GEMM and then waits, that
// core is taken from the client, whose own work between ops (the rest of a PyTorch model)
// runs up to twice as slow (docs/gemm.md, "Idle OpenBLAS threads"). With the variable
// unset (or empty, which OpenBLAS reads as its default) sstemu sets it to
// autoThreadTimeout; a value the user set is kept.

/*
#include <stdlib.h>
#include <cblas.h>

// The OPENBLAS_THREAD_TIMEOUT sstemu sets (autoThreadTimeout in Go).
#define SSTEMU_AUTO_THREAD_TIMEOUT 24
#define SSTEMU_STR_(x) #x
#define SSTEMU_STR(x) SSTEMU_STR_(x)

// Who chose a setting: nobody (OpenBLAS's own choice or default), the user, sstemu.
#define SSTEMU_SOURCE_OPENBLAS 0
#define SSTEMU_SOURCE_USER 1
#define SSTEMU_SOURCE_AUTO 2

static const char *sstemu_core_auto;
static const char *sstemu_core_user;
static int sstemu_timeout_source = SSTEMU_SOURCE_OPENBLAS;

// OpenBLAS's own: the OPENBLAS_THREAD_TIMEOUT it read at load (atoi; 0 when unset).
extern unsigned int openblas_thread_timeout(void);

__attribute__((constructor(101))) static void sstemu_choose_core(void) {
	const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
	if (timeout != NULL && timeout[0] != '\0') {
		sstemu_timeout_source = SSTEMU_SOURCE_USER;
	} else if (setenv("OPENBLAS_THREAD_TIMEOUT", SSTEMU_STR(SSTEMU_AUTO_THREAD_TIMEOUT), 1) == 0) {
		sstemu_timeout_source = SSTEMU_SOURCE_AUTO;
	}
	const char *user = getenv("OPENBLAS_CORETYPE");
	if (user != NULL && user[0] != '\0') { // an empty value: OpenBLAS ignores it too, so choose
		sstemu_core_user = user;
		return;
	}
	const char *core = NULL;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512cd")) {
		// 0.3.21 does not look the name Cooperlake up (its table stops at SkylakeX) and
		// falls back on its feature list, which gives Cooperlake where BF16 is (docs/gemm.md).
		core = __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
	} else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		core = "Haswell";
	} else if (__builtin_cpu_supports("avx")) {
		core = "Sandybridge";
	}
#endif
	if (core != NULL && setenv("OPENBLAS_CORETYPE", core, 1) == 0) {
		sstemu_core_auto = core;
	}
}

static const char *sstemu_core_choice(int *source) {
	if (sstemu_core_user != NULL) {
		*source = SSTEMU_SOURCE_USER;
		return sstemu_core_user;
	}
	if (sstemu_core_auto != NULL) {
		*source = SSTEMU_SOURCE_AUTO;
		return sstemu_core_auto;
	}
	*source = SSTEMU_SOURCE_OPENBLAS;
	return "";
}

static int sstemu_thread_timeout_source(void) {
	return sstemu_timeout_source;
}

static void sstemu_auto_unset(void) {
	if (sstemu_core_auto != NULL) {
		unsetenv("OPENBLAS_CORETYPE");
	}
	if (sstemu_timeout_source == SSTEMU_SOURCE_AUTO) {
		unsetenv("OPENBLAS_THREAD_TIMEOUT");
	}
}
*/
import "C"

// autoThreadTimeout is the OPENBLAS_THREAD_TIMEOUT sstemu sets when the user has not: idle
// workers spin 2^24 TSC ticks (≈ 6.5 ms at 2.6 GHz) before sleeping. That still covers the
// gaps between back-to-back calls (a benchmark's loop, a MATMUL's batch, streamed K-blocks
// a few ms apart), which would otherwise pay a wake-up each, and frees the core soon after
// the last one.
const autoThreadTimeout = C.SSTEMU_AUTO_THREAD_TIMEOUT

// OpenBLAS's bounds and default of OPENBLAS_THREAD_TIMEOUT (driver/others/blas_server.c:
// the value is clamped to [4, 30]; 0, i.e. unset or not a number, keeps THREAD_TIMEOUT).
const (
	openBLASMinThreadTimeout     = 4
	openBLASMaxThreadTimeout     = 30
	openBLASDefaultThreadTimeout = 28
)

// threadTimeout is the idle-spin bound OpenBLAS runs with, as the exponent it applies, and
// who chose it (CoreUser, CoreAuto, or CoreOpenBLAS when setting the variable failed). A
// user's value OpenBLAS cannot read as a number runs its default, still the user's.
func threadTimeout() (exponent int, source string) {
	v := int(C.openblas_thread_timeout())
	source = sourceName(C.sstemu_thread_timeout_source())
	if v == 0 {
		return openBLASDefaultThreadTimeout, source
	}
	return min(max(v, openBLASMinThreadTimeout), openBLASMaxThreadTimeout), source
}

// coreChoice is what the constructor did: the OPENBLAS_CORETYPE OpenBLAS read and who
// set it (CoreUser, CoreAuto, or CoreOpenBLAS with an empty value). It also removes the
// constructor's automatic choices (the kernels, the idle-spin bound) from the C
// environment, which OpenBLAS read at load and never reads again.
func coreChoice() (requested, source string) {
	var src C.int
	requested = C.GoString(C.sstemu_core_choice(&src))
	C.sstemu_auto_unset()
	if source = sourceName(src); source == CoreOpenBLAS {
		requested = ""
	}
	return requested, source
}

// sourceName names the constructor's SSTEMU_SOURCE_* value.
func sourceName(src C.int) string {
	switch src {
	case C.SSTEMU_SOURCE_USER:
		return CoreUser
	case C.SSTEMU_SOURCE_AUTO:
		return CoreAuto
	default:
		return CoreOpenBLAS
	}
}

// openBLASThreads is how many threads OpenBLAS runs a threaded call on (the caller's
// included).
func openBLASThreads() int {
	return int(C.openblas_get_num_threads())
}
