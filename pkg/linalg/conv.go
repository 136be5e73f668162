package linalg

import (
	"fmt"
	"math"
)

// ConvParams are the shape fields of a 2-D convolution, PyTorch's conv2d without bias: an
// NCHW input and an OIHW weight [O, C/Groups, KH, KW]. It mirrors deviceserver.Conv2D.
type ConvParams struct {
	InputShape  [4]int // N, C, H, W; each ≥ 1
	WeightShape [4]int // O, C/Groups, KH, KW; each ≥ 1
	Stride      [2]int // H, W; each ≥ 1
	Padding     [2]int // H, W; each ≥ 0, zeros added on both sides
	Dilation    [2]int // H, W; each ≥ 1
	Groups      int    // ≥ 1, divides C and O
}

// convPlan is a validated convolution with its derived sizes.
type convPlan struct {
	ConvParams
	outShape [4]int // N, O, OH, OW
	cg, og   int    // channels and output channels per group
	k        int    // GEMM inner size: Cg·KH·KW
	pixels   int    // OH·OW, the GEMM's N for one image
	gemmN    int    // N·OH·OW, the GEMM's N for the whole batch
	inLen    int
	wLen     int
	outLen   int
}

// Conv2DShape validates a convolution and returns its output shape [N, O, OH, OW], with
// OH = ⌊(H + 2·padH − dilH·(KH−1) − 1) / strideH⌋ + 1 (likewise OW), and the GEMMs it is
// lowered to: one per group, {M: O/Groups, N: N·OH·OW, K: (C/Groups)·KH·KW}, the weight
// rows of the group times the im2col matrix of the whole batch. Conv2D computes the same
// GEMMs one image at a time (column blocks of N·OH·OW), which is the same arithmetic.
//
// Errors are *Error: ErrBadDim for a dimension, stride, dilation or group count below 1, a
// negative padding, groups not dividing C or O, or an output smaller than 1×1;
// ErrShapeMismatch when WeightShape[1] ≠ C/Groups; ErrOverflow when a size does not fit in
// an int.
func Conv2DShape(p ConvParams) (outShape [4]int, gemms []GEMMShape, err error) {
	pl, err := planConv(p)
	if err != nil {
		return [4]int{}, nil, err
	}
	gemms = make([]GEMMShape, p.Groups)
	for i := range gemms {
		gemms[i] = GEMMShape{M: pl.og, N: pl.gemmN, K: pl.k}
	}
	return pl.outShape, gemms, nil
}

// Conv2DBatches is Conv2DShape with the per-group GEMMs counted instead of listed (one
// GEMMBatch of Groups GEMMs), so a depthwise convolution of millions of groups costs no
// memory to describe.
func Conv2DBatches(p ConvParams) (outShape [4]int, batches []GEMMBatch, err error) {
	pl, err := planConv(p)
	if err != nil {
		return [4]int{}, nil, err
	}
	return pl.outShape, []GEMMBatch{{Shape: GEMMShape{M: pl.og, N: pl.gemmN, K: pl.k}, Count: p.Groups}}, nil
}

// Conv2D computes the convolution of an NCHW input with an OIHW weight (rules and errors
// in Conv2DShape) and returns the output shape and a freshly allocated NCHW result. The
// slices must hold exactly the products of InputShape and WeightShape (ErrLength).
//
// Each image and group is lowered to one GEMM, weight[O/g, K] · columns[K, OH·OW], whose
// result is the group's contiguous block of output channels; the columns are the im2col
// unfolding of the group's input channels, skipped for 1×1 kernels with stride 1 and no
// padding, where the input already is that matrix.
func Conv2D(p ConvParams, input, weight []float32) (outShape [4]int, out []float32, err error) {
	pl, err := planConv(p)
	if err != nil {
		return [4]int{}, nil, err
	}
	if len(input) != pl.inLen {
		return [4]int{}, nil, newError("conv2d", "Input", ErrLength, "len = %d, shape %v holds %d", len(input), p.InputShape, pl.inLen)
	}
	if len(weight) != pl.wLen {
		return [4]int{}, nil, newError("conv2d", "Weight", ErrLength, "len = %d, shape %v holds %d", len(weight), p.WeightShape, pl.wLen)
	}
	out = make([]float32, pl.outLen)
	pl.compute(input, weight, out)
	return pl.outShape, out, nil
}

// compute runs the N·Groups GEMMs, spread over goroutines when each is too small for
// OpenBLAS to thread.
func (pl *convPlan) compute(input, weight, out []float32) {
	n, c, h, w := pl.InputShape[0], pl.InputShape[1], pl.InputShape[2], pl.InputShape[3]
	g := GEMMShape{M: pl.og, N: pl.pixels, K: pl.k}
	direct := pl.WeightShape[2] == 1 && pl.WeightShape[3] == 1 &&
		pl.Stride == [2]int{1, 1} && pl.Padding == [2]int{0, 0}
	items := n * pl.Groups
	workers := 1
	if g.isSmall() {
		workers = workerCount(items)
	}
	cols := make([][]float32, workers)
	parallelFor(workers, items, func(worker, lo, hi int) {
		if !direct && cols[worker] == nil {
			cols[worker] = make([]float32, pl.k*pl.pixels)
		}
		for it := lo; it < hi; it++ {
			img, grp := it/pl.Groups, it%pl.Groups
			in := input[(img*c+grp*pl.cg)*h*w : (img*c+(grp+1)*pl.cg)*h*w]
			col := in
			if !direct {
				col = cols[worker]
				pl.im2col(in, col, workers == 1)
			}
			o := out[(img*pl.outShape[1]+grp*pl.og)*pl.pixels : (img*pl.outShape[1]+(grp+1)*pl.og)*pl.pixels]
			Sgemm(g.M, g.N, g.K, weight[grp*pl.og*pl.k:(grp+1)*pl.og*pl.k], col, o)
		}
	})
}

// im2col unfolds one group's input channels in [Cg, H, W] into col [Cg·KH·KW, OH·OW]:
// row (c, kh, kw) holds, for every output pixel (oh, ow), the input element under kernel
// tap (kh, kw), or 0 where the tap falls in the padding. Rows are independent, so a large
// unfolding is split between goroutines (parallel is false when the caller already runs
// one item per goroutine).
func (pl *convPlan) im2col(in, col []float32, parallel bool) {
	rows := pl.k
	workers := 1
	if parallel && rows*pl.pixels >= im2colParallelElems {
		workers = workerCount(rows)
	}
	parallelFor(workers, rows, func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			pl.im2colRow(in, col[r*pl.pixels:(r+1)*pl.pixels], r)
		}
	})
}

// im2colParallelElems is the im2col size (elements) from which it is worth splitting the
// unfolding between goroutines.
const im2colParallelElems = 1 << 16

// im2colRow fills dst, the im2col row r = (c·KH + i)·KW + j, for input channel c and
// kernel tap (i, j).
func (pl *convPlan) im2colRow(in, dst []float32, r int) {
	h, w := pl.InputShape[2], pl.InputShape[3]
	kh, kw := pl.WeightShape[2], pl.WeightShape[3]
	oh, ow := pl.outShape[2], pl.outShape[3]
	sh, sw := pl.Stride[0], pl.Stride[1]
	c, i, j := r/(kh*kw), r/kw%kh, r%kw
	plane := in[c*h*w : (c+1)*h*w]
	// Output columns whose input column x = ow·sw + x0 lies in [0, w).
	x0 := j*pl.Dilation[1] - pl.Padding[1]
	owLo := max(ceilDiv(-x0, sw), 0)
	owHi := min(ceilDiv(w-x0, sw), ow)
	for y := range oh {
		line := dst[y*ow : (y+1)*ow]
		iy := y*sh - pl.Padding[0] + i*pl.Dilation[0]
		if iy < 0 || iy >= h || owLo >= owHi {
			clear(line)
			continue
		}
		src := plane[iy*w : (iy+1)*w]
		clear(line[:owLo])
		clear(line[owHi:])
		if sw == 1 {
			copy(line[owLo:owHi], src[owLo+x0:owHi+x0])
			continue
		}
		for x := owLo; x < owHi; x++ {
			line[x] = src[x*sw+x0]
		}
	}
}

// ceilDiv is ⌈a/b⌉ for b > 0 and any sign of a.
func ceilDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a > 0 {
		q++
	}
	return q
}

func planConv(p ConvParams) (*convPlan, error) {
	const op = "conv2d"
	check := func(field string, v, least int) error {
		if v < least {
			return newError(op, field, ErrBadDim, "%d is below %d", v, least)
		}
		return nil
	}
	for i, d := range p.InputShape {
		if err := check(fmt.Sprintf("InputShape[%d]", i), d, 1); err != nil {
			return nil, err
		}
	}
	for i, d := range p.WeightShape {
		if err := check(fmt.Sprintf("WeightShape[%d]", i), d, 1); err != nil {
			return nil, err
		}
	}
	for i := range 2 {
		if err := check(fmt.Sprintf("Stride[%d]", i), p.Stride[i], 1); err != nil {
			return nil, err
		}
		if err := check(fmt.Sprintf("Padding[%d]", i), p.Padding[i], 0); err != nil {
			return nil, err
		}
		if err := check(fmt.Sprintf("Dilation[%d]", i), p.Dilation[i], 1); err != nil {
			return nil, err
		}
	}
	if err := check("Groups", p.Groups, 1); err != nil {
		return nil, err
	}
	n, c, o := p.InputShape[0], p.InputShape[1], p.WeightShape[0]
	if c%p.Groups != 0 {
		return nil, newError(op, "Groups", ErrBadDim, "%d groups do not divide %d input channels", p.Groups, c)
	}
	if o%p.Groups != 0 {
		return nil, newError(op, "Groups", ErrBadDim, "%d groups do not divide %d output channels", p.Groups, o)
	}
	pl := &convPlan{ConvParams: p, cg: c / p.Groups, og: o / p.Groups}
	if p.WeightShape[1] != pl.cg {
		return nil, newError(op, "WeightShape[1]", ErrShapeMismatch,
			"weight has %d channels per group, input has %d channels in %d groups (%d per group)",
			p.WeightShape[1], c, p.Groups, pl.cg)
	}

	var outHW [2]int
	for i, name := range [2]string{"height", "width"} {
		size, k := p.InputShape[2+i], p.WeightShape[2+i]
		span, ok1 := mulInt(p.Dilation[i], k-1) // dilated kernel extent − 1
		padded, ok2 := mulInt(2, p.Padding[i])
		if !ok1 || !ok2 || span > math.MaxInt-1 || padded > math.MaxInt-size {
			return nil, newError(op, "output "+name, ErrOverflow, "kernel or padding too large")
		}
		if size+padded < span+1 {
			return nil, newError(op, "output "+name, ErrBadDim,
				"padded input %s %d is smaller than the dilated kernel %d", name, size+padded, span+1)
		}
		outHW[i] = (size+padded-span-1)/p.Stride[i] + 1
	}
	pl.outShape = [4]int{n, o, outHW[0], outHW[1]}

	sizes := []struct {
		name string
		dst  *int
		dims []int
	}{
		{"InputShape", &pl.inLen, p.InputShape[:]},
		{"WeightShape", &pl.wLen, p.WeightShape[:]},
		{"output", &pl.outLen, pl.outShape[:]},
		{"GEMM K", &pl.k, []int{pl.cg, p.WeightShape[2], p.WeightShape[3]}},
		{"GEMM N", &pl.gemmN, []int{n, outHW[0], outHW[1]}},
		{"im2col", new(int), []int{pl.cg, p.WeightShape[2], p.WeightShape[3], outHW[0], outHW[1]}},
	}
	for _, s := range sizes {
		v, ok := product(s.dims...)
		if !ok {
			return nil, newError(op, s.name, ErrOverflow, "product of %v does not fit in an int", s.dims)
		}
		*s.dst = v
	}
	pl.pixels = outHW[0] * outHW[1] // ≤ gemmN, checked above
	return pl, nil
}
