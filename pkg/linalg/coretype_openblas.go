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

/*
#include <stdlib.h>

static const char *sstemu_core_auto;
static const char *sstemu_core_user;

__attribute__((constructor(101))) static void sstemu_choose_core(void) {
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
		*source = 1;
		return sstemu_core_user;
	}
	if (sstemu_core_auto != NULL) {
		*source = 2;
		return sstemu_core_auto;
	}
	*source = 0;
	return "";
}

static void sstemu_core_unset(void) {
	if (sstemu_core_auto != NULL) {
		unsetenv("OPENBLAS_CORETYPE");
	}
}
*/
import "C"

// coreChoice is what the constructor did: the OPENBLAS_CORETYPE OpenBLAS read and who
// set it (CoreUser, CoreAuto, or CoreOpenBLAS with an empty value). It also removes an
// automatic choice from the C environment, which OpenBLAS read at load and never reads
// again.
func coreChoice() (requested, source string) {
	var src C.int
	requested = C.GoString(C.sstemu_core_choice(&src))
	C.sstemu_core_unset()
	switch src {
	case 1:
		return requested, CoreUser
	case 2:
		return requested, CoreAuto
	default:
		return "", CoreOpenBLAS
	}
}
