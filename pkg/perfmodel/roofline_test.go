package perfmodel

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const max32 = 1<<32 - 1 // the largest dimension the reference's uint32 fields can carry

func presetParams(t testing.TB, name string) Params {
	t.Helper()
	p, err := LookupPreset(name)
	require.NoError(t, err)
	return p.Params
}

func mustNew(t testing.TB, kind string, p Params) Model {
	t.Helper()
	m, err := New(kind, p)
	require.NoError(t, err)
	return m
}

type estimateCase struct {
	name string
	op   Op
	want Estimate
}

// assertEstimate checks every field of got against want, Utilization to 1e-12.
func assertEstimate(t *testing.T, want, got Estimate) {
	t.Helper()
	assert.Equal(t, want.FLOPs, got.FLOPs, "FLOPs")
	assert.Equal(t, want.ComputeCycles, got.ComputeCycles, "ComputeCycles")
	assert.Equal(t, want.MemoryBytes, got.MemoryBytes, "MemoryBytes")
	assert.Equal(t, want.MemoryCycles, got.MemoryCycles, "MemoryCycles")
	assert.Equal(t, want.Cycles, got.Cycles, "Cycles")
	assert.Equal(t, want.Bound, got.Bound, "Bound")
	assert.InDelta(t, want.Utilization, got.Utilization, 1e-12, "Utilization")
}

func runEstimateCases(t *testing.T, m Model, cases []estimateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Estimate(tc.op)
			require.NoError(t, err)
			assertEstimate(t, tc.want, got)
		})
	}
}

// Default preset: compute = floor(flops/64), memory = floor(bytes·1410/900000)
// (900 GB/s at 1.41 GHz = 900000 MB/s over 1410 MHz ≈ 638.3 bytes/cycle).
func TestRooflineTutorial(t *testing.T) {
	m := mustNew(t, KindRoofline, presetParams(t, DefaultPreset))
	assert.Equal(t, "roofline", m.Name())
	runEstimateCases(t, m, []estimateCase{
		{
			// the small op of docs/performance.md §Targets: flops = 2·4·16·8 = 1024 → 1024/64 = 16;
			// bytes = (4·8 + 8·16 + 4·16)·4 = 224·4 = 896 → 896·1410/900000 = 1.40 → 1.
			name: "4x16x8 float32",
			op:   Op{M: 4, N: 16, K: 8, DtypeSize: 4},
			want: Estimate{FLOPs: 1024, ComputeCycles: 16, MemoryBytes: 896, MemoryCycles: 1, Cycles: 16,
				Bound: BoundCompute, Utilization: 1024.0 / (16 * 64)},
		},
		{
			// flops = 2·1024³ = 2^31 → 2^31/64 = 2^25 = 33554432;
			// bytes = 3·1024²·4 = 12582912 → 12582912·1410/900000 = 19713.23 → 19713.
			name: "1024 cube float32",
			op:   Op{M: 1024, N: 1024, K: 1024, DtypeSize: 4},
			want: Estimate{FLOPs: 1 << 31, ComputeCycles: 1 << 25, MemoryBytes: 12582912, MemoryCycles: 19713,
				Cycles: 1 << 25, Bound: BoundCompute, Utilization: 1},
		},
		{
			// M = 1 (GEMV): flops = 2·4096·4096 = 33554432 → 524288;
			// bytes = (4096 + 4096² + 4096)·4 = 16785408·4 = 67141632 → ·1410/900000 = 105188.56 → 105188.
			name: "M=1 GEMV",
			op:   Op{M: 1, N: 4096, K: 4096, DtypeSize: 4},
			want: Estimate{FLOPs: 33554432, ComputeCycles: 524288, MemoryBytes: 67141632, MemoryCycles: 105188,
				Cycles: 524288, Bound: BoundCompute, Utilization: 1},
		},
		{
			// flops = 54 → 54/64 = 0; bytes = 27·4 = 108 → 108·1410/900000 = 0.17 → 0.
			// A 0-0 tie is memory-bound (the reference's "compute > memory ? COMPUTE : MEMORY");
			// utilization counts 0 cycles as 1: 54/64.
			name: "3 cube rounds to zero cycles",
			op:   Op{M: 3, N: 3, K: 3, DtypeSize: 4},
			want: Estimate{FLOPs: 54, ComputeCycles: 0, MemoryBytes: 108, MemoryCycles: 0, Cycles: 0,
				Bound: BoundMemory, Utilization: 54.0 / 64},
		},
		{
			// flops = 2 → 0; bytes = 3·1024 = 3072 → 3072·1410/900000 = 4.81 → 4; util = 2/(4·64).
			name: "memory-bound wide elements",
			op:   Op{M: 1, N: 1, K: 1, DtypeSize: 1024},
			want: Estimate{FLOPs: 2, ComputeCycles: 0, MemoryBytes: 3072, MemoryCycles: 4, Cycles: 4,
				Bound: BoundMemory, Utilization: 2.0 / (4 * 64)},
		},
		{
			// flops = 16 → 0; bytes = 12·512 = 6144 → 6144·1410/900000 = 9.63 → 9; util = 16/(9·64).
			name: "memory-bound 2 cube",
			op:   Op{M: 2, N: 2, K: 2, DtypeSize: 512},
			want: Estimate{FLOPs: 16, ComputeCycles: 0, MemoryBytes: 6144, MemoryCycles: 9, Cycles: 9,
				Bound: BoundMemory, Utilization: 16.0 / (9 * 64)},
		},
		{
			// M = 2^32-1 (the reference's M·K wraps in 32 bits for this op once K > 1):
			// flops = 2·(2^32-1) = 8589934590 → /64 = 134217727.97 → 134217727;
			// bytes = ((2^32-1) + 1 + (2^32-1))·4 = (2^33-1)·4 = 34359738364
			//   → 34359738364·1410/900000 = 48447231093240/900000 = 53830256.77 → 53830256.
			// Utilization 8589934590/(134217727·64) = 1.000000007 (the floor) is clamped to 1.
			name: "M=2^32-1 N=K=1",
			op:   Op{M: max32, N: 1, K: 1, DtypeSize: 4},
			want: Estimate{FLOPs: 8589934590, ComputeCycles: 134217727, MemoryBytes: 34359738364, MemoryCycles: 53830256,
				Cycles: 134217727, Bound: BoundCompute, Utilization: 1},
		},
		{
			// The largest op that fits: flops = 2·(2^32-1)·2^31 = 2^64 - 2^32 = 18446744069414584320
			//   → /64 = 2^58 - 2^26 = 288230376084602880;
			// bytes = (2^32-1) + 2^31 + (2^32-1)·2^31 = 2^63 + 2^32 - 1 = 9223372041149743103
			//   → ·1410/900000 = ·47/30000 = 433498485934037925841/30000 = 14449949531134597.5 → 14449949531134597.
			name: "M=2^32-1 N=2^31 K=1 fits",
			op:   Op{M: max32, N: 1 << 31, K: 1, DtypeSize: 1},
			want: Estimate{FLOPs: 18446744069414584320, ComputeCycles: 288230376084602880,
				MemoryBytes: 9223372041149743103, MemoryCycles: 14449949531134597,
				Cycles: 288230376084602880, Bound: BoundCompute, Utilization: 1},
		},
	})
}

func TestRooflineOverflow(t *testing.T) {
	tiny := presetParams(t, DefaultPreset)
	tiny.BandwidthGBps = 0.001          // 1 MB/s
	tiny.ClockGHz = MaxRateMilli / 1000 // 2^40 MHz: 2^40 cycles per byte
	cases := []struct {
		name     string
		p        Params
		op       Op
		quantity string
	}{
		// 2·(2^32-1)³ ≈ 2^97.
		{"all dims 2^32-1", presetParams(t, DefaultPreset), Op{M: max32, N: max32, K: max32, DtypeSize: 4}, "flops"},
		// 2·(2^32-1)·2^32 = 2^65 - 2^33.
		{"flops just over", presetParams(t, DefaultPreset), Op{M: max32, N: 1 << 32, K: 1, DtypeSize: 1}, "flops"},
		// flops fit (see the fitting case), bytes = 2·(2^63 + 2^32 - 1) > 2^64.
		{"bytes just over", presetParams(t, DefaultPreset), Op{M: max32, N: 1 << 31, K: 1, DtypeSize: 2}, "memory bytes"},
		// bytes = 3·2048²·4 = 50331648 ≥ 2^24, times 2^40 MHz / 1 MB/s ≥ 2^64.
		{"memory cycles", tiny, Op{M: 2048, N: 2048, K: 2048, DtypeSize: 4}, "memory cycles"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustNew(t, KindRoofline, tc.p).Estimate(tc.op)
			require.ErrorIs(t, err, ErrOverflow)
			var oe *OverflowError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.quantity, oe.Quantity)
			assert.Equal(t, KindRoofline, oe.Model)
			assert.Equal(t, tc.op, oe.Op)
		})
	}
}

func TestInvalidOp(t *testing.T) {
	for _, kind := range Kinds() {
		m := mustNew(t, kind, presetParams(t, DefaultPreset))
		for _, tc := range []struct {
			field string
			op    Op
		}{
			{"M", Op{M: 0, N: 1, K: 1, DtypeSize: 4}},
			{"N", Op{M: 1, N: 0, K: 1, DtypeSize: 4}},
			{"K", Op{M: 1, N: 1, K: 0, DtypeSize: 4}},
			{"DtypeSize", Op{M: 1, N: 1, K: 1, DtypeSize: 0}},
		} {
			t.Run(kind+"/"+tc.field, func(t *testing.T) {
				_, err := m.Estimate(tc.op)
				require.ErrorIs(t, err, ErrInvalidOp)
				var ie *InvalidOpError
				require.ErrorAs(t, err, &ie)
				assert.Equal(t, tc.field, ie.Field)
				assert.Contains(t, err.Error(), tc.field)
			})
		}
	}
}

// The reference computes in double: (uint64_t)(bytes / (900.0/1.41)) and
// (uint64_t)(flops / 64.0). The exact integer quotients must agree with those for every
// op of ordinary size; this test replays the C++ arithmetic in float64.
func TestRooflineMatchesDoubleReference(t *testing.T) {
	const bytesPerCycle = 900.0 / 1.41
	r := rates{bandwidthMBps: 900000, clockMHz: 1410}

	t.Run("memory cycles sweep", func(t *testing.T) {
		// Every byte count below 1.2·10^6, which crosses 40 exact-integer quotients
		// (multiples of 30000 bytes, where the double quotient is most at risk).
		for b := range uint64(1_200_000) {
			c := checked{}
			require.Equal(t, uint64(float64(b)/bytesPerCycle), r.memoryCycles(&c, b), "bytes=%d", b)
		}
	})
	t.Run("memory cycles boundaries below 2^48", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 100_000 {
			k := rng.Uint64N((1 << 48) / 30000)
			for _, b := range []uint64{k * 30000, k*30000 + 1, max(k*30000, 1) - 1, rng.Uint64N(1 << 48)} {
				c := checked{}
				require.Equal(t, uint64(float64(b)/bytesPerCycle), r.memoryCycles(&c, b), "bytes=%d", b)
			}
		}
	})
	t.Run("worst-case residues below 2^48", func(t *testing.T) {
		// bytes·47 ≡ 29999 (mod 30000) puts the exact quotient bytes·1410/900000 = bytes·47/30000
		// just 1/30000 below an integer: the case where double rounding would round up.
		// 23617·47 = 1109999 ≡ 29999 (mod 30000). Below 2^48 the gap exceeds half an ulp.
		const residue = 23617
		for k := uint64(0); k*30000+residue < 1<<48; k += 9973 {
			b := k*30000 + residue
			c := checked{}
			require.Equal(t, uint64(float64(b)/bytesPerCycle), r.memoryCycles(&c, b), "bytes=%d", b)
		}
	})
	t.Run("exact beyond 2^48 where double is not", func(t *testing.T) {
		// b = 350908135103617 (≈ 2^48.3): b·47 = 16492682349869999, /30000 = 549756078328.99997,
		// so the exact floor is 549756078328; the double quotient rounds up to ...329.
		const b = 350908135103617
		c := checked{}
		assert.Equal(t, uint64(549756078328), r.memoryCycles(&c, b))
		assert.Equal(t, uint64(549756078329), uint64(float64(b)/bytesPerCycle), "the reference's double result")
	})
	t.Run("whole estimates", func(t *testing.T) {
		m := mustNew(t, KindRoofline, presetParams(t, DefaultPreset))
		rng := rand.New(rand.NewPCG(3, 4))
		for range 100_000 {
			op := Op{M: 1 + rng.Uint64N(1<<14), N: 1 + rng.Uint64N(1<<14), K: 1 + rng.Uint64N(1<<14),
				DtypeSize: []uint64{1, 2, 4, 8}[rng.IntN(4)]}
			flops := 2 * op.M * op.N * op.K
			bytes := (op.M*op.K + op.K*op.N + op.M*op.N) * op.DtypeSize
			wantCompute := uint64(float64(flops) / 64.0)
			wantMemory := uint64(float64(bytes) / bytesPerCycle)
			got, err := m.Estimate(op)
			require.NoError(t, err)
			require.Equal(t, wantCompute, got.ComputeCycles, "%v", op)
			require.Equal(t, wantMemory, got.MemoryCycles, "%v", op)
			require.Equal(t, max(wantCompute, wantMemory), got.Cycles, "%v", op)
			wantBound := BoundMemory
			if wantCompute > wantMemory {
				wantBound = BoundCompute
			}
			require.Equal(t, wantBound, got.Bound, "%v", op)
		}
	})
}

func TestRooflineInvalidParams(t *testing.T) {
	base := presetParams(t, DefaultPreset)
	for _, tc := range []struct {
		name, param string
		mutate      func(*Params)
	}{
		{"zero FLOPsPerCycle", "FLOPsPerCycle", func(p *Params) { p.FLOPsPerCycle = 0 }},
		{"zero bandwidth", "BandwidthGBps", func(p *Params) { p.BandwidthGBps = 0 }},
		{"negative bandwidth", "BandwidthGBps", func(p *Params) { p.BandwidthGBps = -900 }},
		{"zero clock", "ClockGHz", func(p *Params) { p.ClockGHz = 0 }},
		{"sub-MHz clock", "ClockGHz", func(p *Params) { p.ClockGHz = 1.4105 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.mutate(&p)
			_, err := New(KindRoofline, p)
			require.ErrorIs(t, err, ErrInvalidParam)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.param, pe.Param)
			assert.Equal(t, KindRoofline, pe.Kind)
		})
	}
}

func TestNewUnknownKind(t *testing.T) {
	_, err := New("analytic", presetParams(t, DefaultPreset))
	require.ErrorIs(t, err, ErrUnknownKind)
	assert.Contains(t, err.Error(), "analytic")
	assert.Equal(t, []string{"roofline", "tiled", "systolic", "gpu", "systolic-paper"}, Kinds())
}

func TestUnusedParamsIgnored(t *testing.T) {
	// A roofline needs no tile or array parameters, a systolic array no FLOPsPerCycle.
	p := Params{FLOPsPerCycle: 64, BandwidthGBps: 900, ClockGHz: 1.41}
	_, err := New(KindRoofline, p)
	require.NoError(t, err)
	_, err = New(KindTiled, p)
	require.ErrorIs(t, err, ErrInvalidParam)
	_, err = New(KindSystolic, Params{ArrayRows: 8, ArrayCols: 8, BandwidthGBps: 1, ClockGHz: 1})
	require.NoError(t, err)
}
