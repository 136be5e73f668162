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

// convLayout is the part of a convolution Plan that Compute needs.
type convLayout struct {
	ConvParams
	outShape [4]int // N, O, OH, OW
	cg, og   int    // channels and output channels per group
	k        int    // GEMM inner size: Cg·KH·KW
	pixels   int    // OH·OW, the GEMM's N for one image
	direct   bool   // a 1×1 kernel with stride 1 and no padding: the input is its own im2col
}

// computeConv runs the N·Groups GEMMs of one image and group each, spread over goroutines
// when each is too small for OpenBLAS to thread. Each computes the column block of the
// image in the group's GEMM of Batches, which is the same arithmetic.
func (p *Plan) computeConv(input, weight, out []float32) {
	pl := p.conv
	n, c, h, w := pl.InputShape[0], pl.InputShape[1], pl.InputShape[2], pl.InputShape[3]
	g := GEMMShape{M: pl.og, N: pl.pixels, K: pl.k}
	direct := pl.direct
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
func (pl *convLayout) im2col(in, col []float32, parallel bool) {
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
func (pl *convLayout) im2colRow(in, dst []float32, r int) {
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

// PlanConv2D validates a convolution. Its output shape is [N, O, OH, OW], with
// OH = ⌊(H + 2·padH − dilH·(KH−1) − 1) / strideH⌋ + 1 (likewise OW), and it lowers to one
// GEMM per group, {M: O/Groups, N: N·OH·OW, K: (C/Groups)·KH·KW}: the weight rows of the
// group times the im2col matrix of the whole batch (Compute runs the same arithmetic one
// image at a time, its column blocks, so that the im2col buffer stays one image's size).
//
// Errors are *Error: ErrBadDim for a dimension, stride, dilation or group count below 1, a
// negative padding, groups not dividing C or O, or an output smaller than 1×1;
// ErrShapeMismatch when WeightShape[1] ≠ C/Groups; ErrOverflow when a size does not fit in
// an int.
func PlanConv2D(p ConvParams) (Plan, error) {
	const op = "conv2d"
	// check formats the field's name only on error, so that planning allocates nothing.
	check := func(field string, index, v, least int) error {
		if v >= least {
			return nil
		}
		if index >= 0 {
			field = fmt.Sprintf("%s[%d]", field, index)
		}
		return newError(op, field, ErrBadDim, "%d is below %d", v, least)
	}
	for i, d := range p.InputShape {
		if err := check("InputShape", i, d, 1); err != nil {
			return Plan{}, err
		}
	}
	for i, d := range p.WeightShape {
		if err := check("WeightShape", i, d, 1); err != nil {
			return Plan{}, err
		}
	}
	for i := range 2 {
		if err := check("Stride", i, p.Stride[i], 1); err != nil {
			return Plan{}, err
		}
		if err := check("Padding", i, p.Padding[i], 0); err != nil {
			return Plan{}, err
		}
		if err := check("Dilation", i, p.Dilation[i], 1); err != nil {
			return Plan{}, err
		}
	}
	if err := check("Groups", -1, p.Groups, 1); err != nil {
		return Plan{}, err
	}
	n, c, o := p.InputShape[0], p.InputShape[1], p.WeightShape[0]
	if c%p.Groups != 0 {
		return Plan{}, newError(op, "Groups", ErrBadDim, "%d groups do not divide %d input channels", p.Groups, c)
	}
	if o%p.Groups != 0 {
		return Plan{}, newError(op, "Groups", ErrBadDim, "%d groups do not divide %d output channels", p.Groups, o)
	}
	pl := &convLayout{ConvParams: p, cg: c / p.Groups, og: o / p.Groups}
	if p.WeightShape[1] != pl.cg {
		return Plan{}, newError(op, "WeightShape[1]", ErrShapeMismatch,
			"weight has %d channels per group, input has %d channels in %d groups (%d per group)",
			p.WeightShape[1], c, p.Groups, pl.cg)
	}

	// A kernel wider than the padded input is the kernel's fault, as PyTorch reports it
	// ("Kernel size can't be greater than actual input size").
	weightDims := [2]string{"WeightShape[2]", "WeightShape[3]"}
	var outHW [2]int
	for i, name := range [2]string{"height", "width"} {
		size, k := p.InputShape[2+i], p.WeightShape[2+i]
		span, ok1 := mulInt(p.Dilation[i], k-1) // dilated kernel extent − 1
		padded, ok2 := mulInt(2, p.Padding[i])
		if !ok1 || !ok2 || span > math.MaxInt-1 || padded > math.MaxInt-size {
			return Plan{}, newError(op, "output "+name, ErrOverflow, "kernel or padding too large")
		}
		if size+padded < span+1 {
			return Plan{}, newError(op, weightDims[i], ErrBadDim,
				"padded input %s %d is smaller than the dilated kernel %d", name, size+padded, span+1)
		}
		outHW[i] = (size+padded-span-1)/p.Stride[i] + 1
	}
	pl.outShape = [4]int{n, o, outHW[0], outHW[1]}
	pl.direct = p.WeightShape[2] == 1 && p.WeightShape[3] == 1 && p.Stride == [2]int{1, 1} && p.Padding == [2]int{0, 0}

	plan := Plan{kind: KindConv2D, outRank: 4}
	var sizeErr error
	size := func(name string, dims ...int) int {
		v, ok := product(dims...)
		if !ok && sizeErr == nil {
			sizeErr = newError(op, name, ErrOverflow, "product of %v does not fit in an int", append([]int(nil), dims...))
		}
		return v
	}
	plan.inputs[0] = size("InputShape", p.InputShape[0], p.InputShape[1], p.InputShape[2], p.InputShape[3])
	plan.inputs[1] = size("WeightShape", p.WeightShape[0], p.WeightShape[1], p.WeightShape[2], p.WeightShape[3])
	plan.outLen = size("output", n, o, outHW[0], outHW[1])
	pl.k = size("GEMM K", pl.cg, p.WeightShape[2], p.WeightShape[3])
	gemmN := size("GEMM N", n, outHW[0], outHW[1])
	im2col := size("im2col", pl.cg, p.WeightShape[2], p.WeightShape[3], outHW[0], outHW[1])
	if sizeErr != nil {
		return Plan{}, sizeErr
	}
	pl.pixels = outHW[0] * outHW[1] // ≤ gemmN, checked above
	if !pl.direct {
		plan.workspace = im2col
	}
	copy(plan.out[:], pl.outShape[:])
	plan.gemm = GEMMShape{M: pl.og, N: gemmN, K: pl.k}
	plan.count = p.Groups
	plan.conv = pl
	return plan, nil
}
