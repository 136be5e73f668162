package linalg

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// conv builds ConvParams; stride, padding and dilation are (H, W) pairs.
func conv(in, w [4]int, stride, pad, dil [2]int, groups int) ConvParams {
	return ConvParams{InputShape: in, WeightShape: w, Stride: stride, Padding: pad, Dilation: dil, Groups: groups}
}

// refConv2D is the direct float64 convolution, straight from the definition:
// out[n,o,y,x] = Σ_{c,i,j} in[n, g·Cg+c, y·sh−ph+i·dh, x·sw−pw+j·dw] · w[o,c,i,j] with g the
// group of output channel o and out-of-range input positions reading 0. It returns the
// values, Σ|in||w| per element and the number of terms per element.
func refConv2D(p ConvParams, outShape [4]int, in, w []float32) (ref, mag []float64, terms int) {
	n, c, h, wd := p.InputShape[0], p.InputShape[1], p.InputShape[2], p.InputShape[3]
	o, cg, kh, kw := p.WeightShape[0], p.WeightShape[1], p.WeightShape[2], p.WeightShape[3]
	oh, ow := outShape[2], outShape[3]
	og := o / p.Groups
	ref = make([]float64, n*o*oh*ow)
	mag = make([]float64, len(ref))
	for b := range n {
		for oc := range o {
			g := oc / og
			for y := range oh {
				for x := range ow {
					var s, t float64
					for ci := range cg {
						for i := range kh {
							for j := range kw {
								iy := y*p.Stride[0] - p.Padding[0] + i*p.Dilation[0]
								ix := x*p.Stride[1] - p.Padding[1] + j*p.Dilation[1]
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								v := float64(in[((b*c+g*cg+ci)*h+iy)*wd+ix]) * float64(w[((oc*cg+ci)*kh+i)*kw+j])
								s += v
								t += math.Abs(v)
							}
						}
					}
					ref[((b*o+oc)*oh+y)*ow+x] = s
					mag[((b*o+oc)*oh+y)*ow+x] = t
				}
			}
		}
	}
	return ref, mag, cg * kh * kw
}

// convCases cover stride, padding, dilation and groups, alone and combined. want is the
// output shape worked by hand from OH = ⌊(H + 2p − d(KH−1) − 1)/s⌋ + 1.
var convCases = []struct {
	name string
	p    ConvParams
	want [4]int
}{
	{"3x3 same", conv([4]int{1, 3, 8, 8}, [4]int{4, 3, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1), [4]int{1, 4, 8, 8}},
	{"3x3 valid", conv([4]int{2, 3, 7, 9}, [4]int{5, 3, 3, 3}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1), [4]int{2, 5, 5, 7}},
	{"stride 2", conv([4]int{1, 2, 9, 9}, [4]int{3, 2, 3, 3}, [2]int{2, 2}, [2]int{1, 1}, [2]int{1, 1}, 1), [4]int{1, 3, 5, 5}},
	{"stride 3 odd", conv([4]int{1, 2, 10, 11}, [4]int{2, 2, 3, 2}, [2]int{3, 3}, [2]int{0, 0}, [2]int{1, 1}, 1), [4]int{1, 2, 3, 4}},
	{"dilation 2", conv([4]int{1, 2, 9, 9}, [4]int{2, 2, 3, 3}, [2]int{1, 1}, [2]int{2, 2}, [2]int{2, 2}, 1), [4]int{1, 2, 9, 9}},
	{"asymmetric", conv([4]int{2, 2, 11, 7}, [4]int{3, 2, 3, 2}, [2]int{2, 1}, [2]int{1, 3}, [2]int{1, 3}, 1), [4]int{2, 3, 6, 10}},
	{"all combined", conv([4]int{2, 4, 12, 13}, [4]int{6, 2, 3, 3}, [2]int{2, 3}, [2]int{2, 1}, [2]int{2, 2}, 2), [4]int{2, 6, 6, 4}},
	{"groups 2", conv([4]int{1, 4, 6, 6}, [4]int{6, 2, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 2), [4]int{1, 6, 6, 6}},
	{"depthwise", conv([4]int{2, 8, 7, 7}, [4]int{8, 1, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 8), [4]int{2, 8, 7, 7}},
	{"depthwise ×2 stride 2", conv([4]int{1, 4, 8, 8}, [4]int{8, 1, 5, 5}, [2]int{2, 2}, [2]int{2, 2}, [2]int{1, 1}, 4), [4]int{1, 8, 4, 4}},
	{"1x1", conv([4]int{2, 6, 5, 4}, [4]int{3, 6, 1, 1}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1), [4]int{2, 3, 5, 4}},
	{"1x1 grouped", conv([4]int{2, 6, 5, 4}, [4]int{9, 2, 1, 1}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 3), [4]int{2, 9, 5, 4}},
	{"1x1 stride 2", conv([4]int{1, 3, 7, 7}, [4]int{2, 3, 1, 1}, [2]int{2, 2}, [2]int{0, 0}, [2]int{1, 1}, 1), [4]int{1, 2, 4, 4}},
	{"1x1 padded", conv([4]int{1, 3, 3, 3}, [4]int{2, 3, 1, 1}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1), [4]int{1, 2, 5, 5}},
	{"kernel = input", conv([4]int{1, 2, 5, 5}, [4]int{3, 2, 5, 5}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1), [4]int{1, 3, 1, 1}},
	{"kernel > input, padded", conv([4]int{1, 1, 2, 2}, [4]int{1, 1, 5, 5}, [2]int{1, 1}, [2]int{2, 2}, [2]int{1, 1}, 1), [4]int{1, 1, 2, 2}},
	{"padding beyond kernel", conv([4]int{1, 1, 3, 3}, [4]int{1, 1, 2, 2}, [2]int{2, 2}, [2]int{3, 3}, [2]int{1, 1}, 1), [4]int{1, 1, 4, 4}},
	{"parallel im2col", conv([4]int{1, 8, 40, 80}, [4]int{16, 8, 3, 3}, [2]int{1, 2}, [2]int{1, 1}, [2]int{1, 1}, 1), [4]int{1, 16, 40, 40}},
	{"large-ish", conv([4]int{2, 16, 20, 20}, [4]int{32, 16, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1), [4]int{2, 32, 20, 20}},
}

func TestConv2DAgainstFloat64Reference(t *testing.T) {
	for i, tc := range convCases {
		t.Run(tc.name, func(t *testing.T) {
			in := randSlice(uint64(300+i), prod(tc.p.InputShape[:]))
			w := randSlice(uint64(400+i), prod(tc.p.WeightShape[:]))
			shape, out, err := conv2D(tc.p, in, w)
			require.NoError(t, err)
			require.Equal(t, tc.want, shape)
			ref, mag, terms := refConv2D(tc.p, shape, in, w)
			requireClose(t, terms, out, ref, mag)
		})
	}
}

func TestConv2DShapeGEMMs(t *testing.T) {
	cases := []struct {
		name  string
		p     ConvParams
		out   [4]int
		gemms []GEMMShape
	}{
		{
			// OH = (5 + 2 − 2 − 1)/1 + 1 = 5; per group M = 6/2, N = 2·5·5, K = (4/2)·3·3.
			"grouped", conv([4]int{2, 4, 5, 5}, [4]int{6, 2, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 2),
			[4]int{2, 6, 5, 5}, []GEMMShape{{M: 3, N: 50, K: 18}, {M: 3, N: 50, K: 18}},
		},
		{
			// OH = (224 + 6 − 6 − 1)/2 + 1 = 112: ResNet-50's first layer.
			"resnet stem", conv([4]int{1, 3, 224, 224}, [4]int{64, 3, 7, 7}, [2]int{2, 2}, [2]int{3, 3}, [2]int{1, 1}, 1),
			[4]int{1, 64, 112, 112}, []GEMMShape{{M: 64, N: 12544, K: 147}},
		},
		{
			// OH = (5 − 2·2 − 1)/1 + 1 = 1 with dilation 2.
			"dilated to 1x1", conv([4]int{3, 1, 5, 5}, [4]int{2, 1, 3, 3}, [2]int{1, 1}, [2]int{0, 0}, [2]int{2, 2}, 1),
			[4]int{3, 2, 1, 1}, []GEMMShape{{M: 2, N: 3, K: 9}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, gemms, err := conv2DShape(tc.p)
			require.NoError(t, err)
			assert.Equal(t, tc.out, out)
			assert.Equal(t, tc.gemms, gemms)
		})
	}
}

func TestConv2DHandWorked(t *testing.T) {
	// A 2×2 all-ones kernel with stride 2 over 1…16 sums each 2×2 block:
	// 1+2+5+6 = 14, 3+4+7+8 = 22, 9+10+13+14 = 46, 11+12+15+16 = 54.
	in := make([]float32, 16)
	for i := range in {
		in[i] = float32(i + 1)
	}
	p := conv([4]int{1, 1, 4, 4}, [4]int{1, 1, 2, 2}, [2]int{2, 2}, [2]int{0, 0}, [2]int{1, 1}, 1)
	shape, out, err := conv2D(p, in, []float32{1, 1, 1, 1})
	require.NoError(t, err)
	assert.Equal(t, [4]int{1, 1, 2, 2}, shape)
	assert.Equal(t, []float32{14, 22, 46, 54}, out)

	// Padding 1 with a 3×3 all-ones kernel on a 2×2 input of ones: every output sees all
	// four inputs, so each output is 4 and the 2×2 output size is preserved.
	p = conv([4]int{1, 1, 2, 2}, [4]int{1, 1, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1)
	ones9 := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	shape, out, err = conv2D(p, []float32{1, 1, 1, 1}, ones9)
	require.NoError(t, err)
	assert.Equal(t, [4]int{1, 1, 2, 2}, shape)
	assert.Equal(t, []float32{4, 4, 4, 4}, out)
}

func TestConv2DErrors(t *testing.T) {
	ok := conv([4]int{1, 4, 5, 5}, [4]int{2, 2, 3, 3}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 2)
	with := func(f func(p *ConvParams)) ConvParams {
		p := ok
		f(&p)
		return p
	}
	cases := []struct {
		name  string
		p     ConvParams
		kind  error
		field string
	}{
		{"zero batch", with(func(p *ConvParams) { p.InputShape[0] = 0 }), ErrBadDim, "InputShape[0]"},
		{"negative width", with(func(p *ConvParams) { p.InputShape[3] = -5 }), ErrBadDim, "InputShape[3]"},
		{"zero out channels", with(func(p *ConvParams) { p.WeightShape[0] = 0 }), ErrBadDim, "WeightShape[0]"},
		{"zero kernel", with(func(p *ConvParams) { p.WeightShape[2] = 0 }), ErrBadDim, "WeightShape[2]"},
		{"zero stride", with(func(p *ConvParams) { p.Stride[1] = 0 }), ErrBadDim, "Stride[1]"},
		{"negative padding", with(func(p *ConvParams) { p.Padding[0] = -1 }), ErrBadDim, "Padding[0]"},
		{"zero dilation", with(func(p *ConvParams) { p.Dilation[0] = 0 }), ErrBadDim, "Dilation[0]"},
		{"zero groups", with(func(p *ConvParams) { p.Groups = 0 }), ErrBadDim, "Groups"},
		{"groups vs C", with(func(p *ConvParams) { p.Groups = 3; p.WeightShape[0] = 3 }), ErrBadDim, "Groups"},
		{"groups vs O", with(func(p *ConvParams) { p.WeightShape[0] = 3 }), ErrBadDim, "Groups"},
		{"weight channels", with(func(p *ConvParams) { p.WeightShape[1] = 4 }), ErrShapeMismatch, "WeightShape[1]"},
		{"kernel too big", with(func(p *ConvParams) { p.WeightShape[2] = 6 }), ErrBadDim, "WeightShape[2]"},
		{"dilation too big", with(func(p *ConvParams) { p.Dilation[1] = 3 }), ErrBadDim, "WeightShape[3]"},
		{"huge dilation", with(func(p *ConvParams) { p.Dilation[1] = math.MaxInt/2 + 1 }), ErrOverflow, "output width"},
		{"huge padding", with(func(p *ConvParams) { p.Padding[0] = math.MaxInt / 2 }), ErrOverflow, "output height"},
		{"huge input", with(func(p *ConvParams) { p.InputShape = [4]int{1 << 21, 4, 1 << 21, 1 << 21} }), ErrOverflow, "InputShape"},
		{"huge output", with(func(p *ConvParams) {
			// 2²² output channels of (3 + 2²¹)² pixels: about 2⁶⁴ elements.
			p.InputShape = [4]int{1, 4, 3, 3}
			p.WeightShape = [4]int{1 << 22, 2, 1, 1}
			p.Padding = [2]int{1 << 20, 1 << 20}
		}), ErrOverflow, "output"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := conv2DShape(tc.p)
			require.ErrorIs(t, err, tc.kind)
			var le *Error
			require.ErrorAs(t, err, &le)
			assert.Equal(t, "conv2d", le.Op)
			assert.Equal(t, tc.field, le.Field)
			_, _, err = conv2D(tc.p, nil, nil)
			assert.ErrorIs(t, err, tc.kind)
		})
	}
	t.Run("input length", func(t *testing.T) {
		_, _, err := conv2D(ok, make([]float32, 99), make([]float32, 36))
		require.ErrorIs(t, err, ErrLength)
	})
	t.Run("weight length", func(t *testing.T) {
		_, _, err := conv2D(ok, make([]float32, 100), make([]float32, 35))
		require.ErrorIs(t, err, ErrLength)
	})
}

func FuzzConv2D(f *testing.F) {
	f.Add(int64(1), int64(3), int64(8), int64(8), int64(4), int64(3), int64(3), int64(1), int64(1), int64(1), int64(1), int64(1), int64(1), int64(1))
	f.Add(int64(2), int64(4), int64(9), int64(7), int64(8), int64(3), int64(2), int64(2), int64(1), int64(1), int64(2), int64(2), int64(1), int64(4))
	f.Add(int64(1), int64(2), int64(3), int64(3), int64(2), int64(5), int64(5), int64(1), int64(1), int64(2), int64(2), int64(1), int64(1), int64(2))
	f.Fuzz(func(t *testing.T, n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups int64) {
		p := ConvParams{
			InputShape: [4]int{int(n), int(c), int(h), int(w)},
			Stride:     [2]int{int(sh), int(sw)}, Padding: [2]int{int(ph), int(pw)},
			Dilation: [2]int{int(dh), int(dw)}, Groups: int(groups),
		}
		if groups > 0 {
			p.WeightShape = [4]int{int(o), int(c / groups), int(kh), int(kw)}
		}
		shape, gemms, err := conv2DShape(p)
		if err != nil {
			var le *Error
			require.ErrorAs(t, err, &le)
			return
		}
		require.Len(t, gemms, p.Groups)
		for _, d := range shape {
			require.Positive(t, d)
		}
		g := gemms[0]
		require.Equal(t, shape[1], g.M*p.Groups)
		require.Equal(t, shape[0]*shape[2]*shape[3], g.N)
		inN, wN := prod(p.InputShape[:]), prod(p.WeightShape[:])
		if inN > 1<<12 || wN > 1<<12 || prod(shape[:])*g.K > 1<<16 {
			return
		}
		in, wt := randSlice(1, inN), randSlice(2, wN)
		_, out, err := conv2D(p, in, wt)
		require.NoError(t, err)
		ref, mag, terms := refConv2D(p, shape, in, wt)
		requireClose(t, terms, out, ref, mag)
	})
}

// BenchmarkConv2D measures typical CNN layers and reports GFLOPS (2 per multiply–add).
func BenchmarkConv2D(b *testing.B) {
	layers := []struct {
		name string
		p    ConvParams
	}{
		{"resnet-stem", conv([4]int{1, 3, 224, 224}, [4]int{64, 3, 7, 7}, [2]int{2, 2}, [2]int{3, 3}, [2]int{1, 1}, 1)},
		{"resnet-3x3-256", conv([4]int{1, 256, 14, 14}, [4]int{256, 256, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1)},
		{"1x1-512", conv([4]int{1, 512, 28, 28}, [4]int{512, 512, 1, 1}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1)},
		{"depthwise-3x3-512", conv([4]int{8, 512, 14, 14}, [4]int{512, 1, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 512)},
	}
	for _, l := range layers {
		b.Run(l.name, func(b *testing.B) {
			_, gemms, err := conv2DShape(l.p)
			require.NoError(b, err)
			var flops float64
			for _, g := range gemms {
				flops += g.FLOPs()
			}
			in, w := randSlice(1, prod(l.p.InputShape[:])), randSlice(2, prod(l.p.WeightShape[:]))
			for b.Loop() {
				if _, _, err := conv2D(l.p, in, w); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

// TestConvCasesNamed keeps the case names unique, so a failure points at one case.
func TestConvCasesNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range convCases {
		require.False(t, seen[tc.name], fmt.Sprintf("duplicate case %q", tc.name))
		seen[tc.name] = true
	}
}
