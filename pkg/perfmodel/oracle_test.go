package perfmodel

import (
	"errors"
	"math/big"
	"testing"
)

// oracle re-derives an estimate with arbitrary-precision integers straight from the
// formulas in docs/models.md, with no overflow handling at all, so the fixed-width
// implementation can be compared with it, overflow decisions included.
type oracle struct {
	flops, compute, memory, bytes *big.Int
	peak                          float64
}

var maxU64 = new(big.Int).SetUint64(^uint64(0))

func bi(v uint64) *big.Int { return new(big.Int).SetUint64(v) }

func bmul(xs ...*big.Int) *big.Int {
	r := big.NewInt(1)
	for _, x := range xs {
		r.Mul(r, x)
	}
	return r
}

func badd(xs ...*big.Int) *big.Int {
	r := new(big.Int)
	for _, x := range xs {
		r.Add(r, x)
	}
	return r
}

func bceil(a, b uint64) *big.Int {
	q, m := new(big.Int).QuoRem(bi(a), bi(b), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

func bmin(a, b uint64) *big.Int { return bi(min(a, b)) }

// memCycles is floor(bytes · clockMHz / bandwidthMBps).
func memCycles(bytes *big.Int, clockMHz, bwMBps uint64) *big.Int {
	return new(big.Int).Quo(bmul(bytes, bi(clockMHz)), bi(bwMBps))
}

func oracleEstimate(kind string, p Params, op Op) oracle {
	bw, _ := toMilli("", "", p.BandwidthGBps)
	clk, _ := toMilli("", "", p.ClockGHz)
	if kind == KindGPU {
		return oracleGPU(p, op, 1, clk, bw)
	}
	M, N, K, D := bi(op.M), bi(op.N), bi(op.K), bi(op.DtypeSize)
	o := oracle{flops: bmul(big.NewInt(2), M, N, K)}
	switch kind {
	case KindRoofline:
		o.bytes = bmul(badd(bmul(M, K), bmul(K, N), bmul(M, N)), D)
		o.compute = new(big.Int).Quo(o.flops, bi(p.FLOPsPerCycle))
		o.peak = float64(p.FLOPsPerCycle)
	case KindTiled:
		tM, tN, tK := bceil(op.M, p.TileM), bceil(op.N, p.TileN), bceil(op.K, p.TileK)
		o.compute = bmul(tM, tN, tK, bi(p.CyclesPerTile))
		o.bytes = bmul(badd(bmul(M, K, tN), bmul(K, N, tM), bmul(M, N)), D)
		o.peak = 2 * float64(p.TileM) * float64(p.TileN) * float64(p.TileK) / float64(p.CyclesPerTile)
	case KindSystolic:
		sr, sc, t := p.Dataflow.Mapping(op)
		rf, cf := bceil(sr, p.ArrayRows), bceil(sc, p.ArrayCols)
		R, C := bi(p.ArrayRows), bi(p.ArrayCols)
		perFold := badd(R, C, bi(t), big.NewInt(-2)) // os: R + C + T − 2
		if p.Dataflow != OutputStationary {
			perFold.Add(perFold, R) // ws, is: 2R + C + T − 2
		}
		o.compute = badd(bmul(rf, cf, perFold), big.NewInt(-1))
		out := bmul(M, N) // os writes each output once; ws and is once per row fold
		if p.Dataflow != OutputStationary {
			out = bmul(out, rf)
		}
		o.bytes = bmul(badd(bmul(M, K), bmul(K, N), out), D)
		o.peak = 2 * float64(p.ArrayRows) * float64(p.ArrayCols)
	case KindSystolicPaper:
		var sr, sc, t uint64
		switch p.Dataflow {
		case OutputStationary:
			sr, sc, t = op.M, op.N, op.K
		case WeightStationary:
			sr, sc, t = op.K, op.N, op.M
		case InputStationary:
			sr, sc, t = op.K, op.M, op.N
		}
		rf, cf := bceil(sr, p.ArrayRows), bceil(sc, p.ArrayCols)
		perFold := badd(bmul(big.NewInt(2), bmin(sr, p.ArrayRows)), bmin(sc, p.ArrayCols), bi(t), big.NewInt(-2))
		o.compute = bmul(rf, cf, perFold)
		a, b, c := bmul(M, K), bmul(K, N), bmul(M, N)
		switch p.Dataflow {
		case OutputStationary:
			a, b = bmul(a, cf), bmul(b, rf)
		case WeightStationary:
			a, c = bmul(a, cf), bmul(c, rf)
		case InputStationary:
			b, c = bmul(b, cf), bmul(c, rf)
		}
		o.bytes = bmul(badd(a, b, c), D)
		o.peak = 2 * float64(p.ArrayRows) * float64(p.ArrayCols)
	}
	o.memory = memCycles(o.bytes, clk, bw)
	return o
}

// matchesOracle fails t unless the answer got, err is the oracle's want: ErrOverflow
// exactly when a quantity of want exceeds 64 bits, otherwise no error, the oracle's four
// quantities and Cycles their maximum. what names the case in a failure. It reports
// whether got is an estimate the caller may check further.
func matchesOracle(t *testing.T, what string, got Estimate, err error, want oracle) bool {
	t.Helper()
	if want.overflows() {
		if !errors.Is(err, ErrOverflow) {
			t.Fatalf("%s: oracle overflows, got %+v, %v", what, got, err)
		}
		return false
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, q := range []struct {
		name string
		got  uint64
		want *big.Int
	}{
		{"FLOPs", got.FLOPs, want.flops}, {"ComputeCycles", got.ComputeCycles, want.compute},
		{"MemoryBytes", got.MemoryBytes, want.bytes}, {"MemoryCycles", got.MemoryCycles, want.memory},
	} {
		if q.want.Cmp(bi(q.got)) != 0 {
			t.Fatalf("%s: %s = %d, oracle %v", what, q.name, q.got, q.want)
		}
	}
	if got.Cycles != max(got.ComputeCycles, got.MemoryCycles) {
		t.Fatalf("Cycles %d is not the max of %d and %d", got.Cycles, got.ComputeCycles, got.MemoryCycles)
	}
	return true
}

// overflows reports whether any quantity of the estimate exceeds 64 bits.
func (o oracle) overflows() bool {
	for _, x := range []*big.Int{o.flops, o.compute, o.memory, o.bytes} {
		if x.Cmp(maxU64) > 0 {
			return true
		}
	}
	return false
}
