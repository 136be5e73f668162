package linalg

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// goBackendName names the pure-Go Sgemm implementation.
//
//lint:ignore U1000 Backend returns it in the pure-Go builds (sgemm_purego.go: noopenblas or no cgo).
const goBackendName = "go (" + gemmGoName + "; goroutine-parallel gemv for M = 1, N = 1)"

// Blocking of the pure-Go GEMM (the GotoBLAS scheme): C is computed in nc-column, kc-deep
// slabs of B packed into nr-wide panels (one panel, kc·nr floats = 4 KiB, stays in L1),
// times mc-row blocks of A packed into mr-row strips (mc·kc floats = 64 KiB, in L2). The
// micro-kernel keeps an mr×nr tile of C in registers: 8 accumulators, 2 A and 1 B value
// fit the 15 scalar float registers Go's amd64 ABI leaves, without spills; bigger tiles
// spill and run slower (measured, docs/gemm.md).
const (
	goMR = 2
	goNR = 4
	goKC = 256
	goMC = 128
	goNC = 512
)

// goMinColsPerWorker keeps a goroutine's share of a matrix–vector product large enough to
// be worth the goroutine.
const goMinColsPerWorker = 1024

// sgemmGo computes c = a·b in pure Go; the slices hold exactly m·k, k·n and m·n elements
// and all dimensions are ≥ 1. It is compiled into every build so that the OpenBLAS backend
// can hand it dimensions beyond 32 bits and tests can compare the two. GEMMs go to gemmGo,
// chosen per architecture (sgemm_go_amd64.go, sgemm_go_generic.go).
func sgemmGo(m, n, k int, a, b, c []float32) {
	switch {
	case m == 1:
		vecMatGo(n, k, a, b, c)
	case n == 1:
		matVecGo(m, k, a, b, c)
	default:
		gemmGo(m, n, k, a, b, c)
	}
}

// gemmGonum computes c = a·b with gonum's Sgemm, whose inner loops are SSE assembly on
// amd64 and plain Go elsewhere.
func gemmGonum(m, n, k int, a, b, c []float32) {
	gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, b, n, 0, c, n)
}

// sgemmAccGo computes c = a[:, :k]·b + beta·c with gonum's Sgemm: a is m×k with leading
// dimension lda, b is k×n and c is m×n, both dense.
func sgemmAccGo(m, n, k int, a []float32, lda int, b, c []float32, beta float32) {
	gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, lda, b, n, beta, c, n)
}

// gemmBlocked computes c = a·b with the cache-blocked register kernel, splitting the larger
// of M and N between goroutines in whole mr or nr multiples.
func gemmBlocked(m, n, k int, a, b, c []float32) {
	if n >= m {
		parts := workerCount(n / (goNR * 16))
		parallelFor(parts, parts, func(_, lo, hi int) {
			j0, j1 := splitAligned(n, parts, lo, goNR), splitAligned(n, parts, hi, goNR)
			gemmBlock(m, j1-j0, k, a, k, b[j0:], n, c[j0:], n)
		})
		return
	}
	parts := workerCount(m / (goMR * 16))
	parallelFor(parts, parts, func(_, lo, hi int) {
		i0, i1 := splitAligned(m, parts, lo, goMR), splitAligned(m, parts, hi, goMR)
		gemmBlock(i1-i0, n, k, a[i0*k:], k, b, n, c[i0*n:], n)
	})
}

// splitAligned is the start of part i of n split into parts pieces, rounded to a multiple
// of align (the last boundary is n itself).
func splitAligned(n, parts, i, align int) int {
	if i >= parts {
		return n
	}
	return i * n / parts / align * align
}

// gemmBlock computes C[m,n] = A[m,k]·B[k,n] for strided row-major operands (leading
// dimensions lda, ldb, ldc) on the calling goroutine.
func gemmBlock(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	bp := make([]float32, goKC*roundUp(min(n, goNC), goNR))
	ap := make([]float32, roundUp(min(m, goMC), goMR)*goKC)
	var tile [goMR * goNR]float32
	for jc := 0; jc < n; jc += goNC {
		nb := min(goNC, n-jc)
		for pc := 0; pc < k; pc += goKC {
			kb := min(goKC, k-pc)
			packB(kb, nb, b[pc*ldb+jc:], ldb, bp)
			for ic := 0; ic < m; ic += goMC {
				mb := min(goMC, m-ic)
				packA(mb, kb, a[ic*lda+pc:], lda, ap)
				for jr := 0; jr < nb; jr += goNR {
					panel := bp[jr*kb : (jr+goNR)*kb]
					for ir := 0; ir < mb; ir += goMR {
						kernel2x4(kb, ap[ir*kb:(ir+goMR)*kb], panel, &tile)
						storeTile(&tile, c[(ic+ir)*ldc+jc+jr:], ldc, min(goMR, mb-ir), min(goNR, nb-jr), pc > 0)
					}
				}
			}
		}
	}
}

// packB copies B[kb, nb] (leading dimension ldb) into dst as nr-column panels, each kb
// rows of nr values, zero-padding the last panel.
func packB(kb, nb int, b []float32, ldb int, dst []float32) {
	for jr := 0; jr < nb; jr += goNR {
		panel := dst[jr*kb : (jr+goNR)*kb]
		w := min(goNR, nb-jr)
		for p := range kb {
			row := panel[p*goNR : p*goNR+goNR]
			src := b[p*ldb+jr : p*ldb+jr+w]
			copy(row, src)
			clear(row[w:])
		}
	}
}

// packA copies A[mb, kb] (leading dimension lda) into dst as mr-row strips, each kb
// columns of mr values, zero-padding the last strip.
func packA(mb, kb int, a []float32, lda int, dst []float32) {
	for ir := 0; ir < mb; ir += goMR {
		strip := dst[ir*kb : (ir+goMR)*kb]
		h := min(goMR, mb-ir)
		for r := range goMR {
			if r >= h {
				for p := range kb {
					strip[p*goMR+r] = 0
				}
				continue
			}
			src := a[(ir+r)*lda : (ir+r)*lda+kb]
			for p, v := range src {
				strip[p*goMR+r] = v
			}
		}
	}
}

// kernel2x4 returns in tile the 2×4 product of a packed A strip (kb steps of 2 values) and
// a packed B panel (kb steps of 4 values). Each B value is loaded once and used twice
// right away, which keeps Go's register allocator from spilling the accumulators.
func kernel2x4(kb int, ap, bp []float32, tile *[goMR * goNR]float32) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	ap = ap[:goMR*kb]
	bp = bp[:goNR*kb]
	for len(ap) >= goMR && len(bp) >= goNR {
		a0, a1 := ap[0], ap[1]
		x := bp[0]
		c00 += a0 * x
		c10 += a1 * x
		x = bp[1]
		c01 += a0 * x
		c11 += a1 * x
		x = bp[2]
		c02 += a0 * x
		c12 += a1 * x
		x = bp[3]
		c03 += a0 * x
		c13 += a1 * x
		ap = ap[goMR:]
		bp = bp[goNR:]
	}
	*tile = [goMR * goNR]float32{c00, c01, c02, c03, c10, c11, c12, c13}
}

// storeTile writes (or, with accumulate, adds) the top-left h×w of tile into C.
func storeTile(tile *[goMR * goNR]float32, c []float32, ldc, h, w int, accumulate bool) {
	for r := range h {
		row := c[r*ldc : r*ldc+w]
		t := tile[r*goNR : r*goNR+w]
		if accumulate {
			for j := range row {
				row[j] += t[j]
			}
		} else {
			copy(row, t)
		}
	}
}

// vecMatGo computes c[n] = a[k]·B[k,n] as k row updates c += a[p]·B[p,:], the columns
// split between goroutines.
func vecMatGo(n, k int, a, b, c []float32) {
	parts := workerCount(n / goMinColsPerWorker)
	parallelFor(parts, parts, func(_, lo, hi int) {
		j0, j1 := lo*n/parts, hi*n/parts
		dst := c[j0:j1]
		clear(dst)
		for p, x := range a[:k] {
			axpy(x, b[p*n+j0:p*n+j1], dst)
		}
	})
}

// matVecGo computes c[m] = A[m,k]·b[k] as m dot products, the rows split between
// goroutines.
func matVecGo(m, k int, a, b, c []float32) {
	parts := workerCount(m * k / (goMinColsPerWorker * goMinColsPerWorker / 4))
	parallelFor(parts, parts, func(_, lo, hi int) {
		for i := lo * m / parts; i < hi*m/parts; i++ {
			c[i] = dot(a[i*k:(i+1)*k], b[:k])
		}
	})
}

// axpy sets y += alpha·x (len(y) == len(x)), four elements at a time.
func axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for len(x) >= 4 && len(y) >= 4 {
		y[0] += alpha * x[0]
		y[1] += alpha * x[1]
		y[2] += alpha * x[2]
		y[3] += alpha * x[3]
		x, y = x[4:], y[4:]
	}
	for i, v := range x {
		y[i] += alpha * v
	}
}

// dot returns Σ x[i]·y[i] (len(y) ≥ len(x)) with four independent partial sums.
func dot(x, y []float32) float32 {
	var s0, s1, s2, s3 float32
	y = y[:len(x)]
	for len(x) >= 4 && len(y) >= 4 {
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		x, y = x[4:], y[4:]
	}
	for i, v := range x {
		s0 += v * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// roundUp rounds n up to a multiple of align.
func roundUp(n, align int) int {
	return (n + align - 1) / align * align
}
