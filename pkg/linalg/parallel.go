package linalg

import (
	"runtime"
	"sync"
)

// smallGEMMMACs is the size (M·N·K multiply–adds) up to which OpenBLAS runs a GEMM on one
// thread (its interface/gemm.c: SMP_THRESHOLD_MIN 65536 × GEMM_MULTITHREAD_THRESHOLD 4).
// Batches of GEMMs this small are spread over goroutines instead, so that batched matmuls
// and grouped convolutions still use every core.
const smallGEMMMACs = 64 * 64 * 64

// isSmall reports whether a GEMM is small enough to be run one per goroutine.
func (s GEMMShape) isSmall() bool {
	macs, ok := product(s.M, s.N, s.K)
	return ok && macs <= smallGEMMMACs
}

// parallelFor calls fn on contiguous sub-ranges [lo, hi) that cover [0, n), one per
// worker, on up to workers goroutines, and returns when all are done. worker numbers the
// calls from 0, so fn can use per-worker scratch space.
func parallelFor(workers, n int, fn func(worker, lo, hi int)) {
	workers = min(workers, n)
	if workers <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Go(func() { fn(w, lo, hi) })
	}
	wg.Wait()
}

// workerCount is how many goroutines are worth using for n independent items: one per
// processor Go may use, no more than n, at least 1.
func workerCount(n int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n))
}
