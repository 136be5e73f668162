package perfmodel

import (
	"errors"
	"math/big"
	"testing"
)

// FuzzEstimate drives every model with fuzzed shapes and parameters (set through the
// CONFIGURE encoding, as the SST layer will) and compares each answer with the
// arbitrary-precision oracle: same numbers when everything fits, ErrOverflow exactly when
// something does not, and never a panic.
func FuzzEstimate(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint64(4), uint64(16), uint64(8), uint64(4), uint32(0), uint64(0), uint32(0), uint64(0))
	f.Add(uint8(1), uint8(3), uint64(257), uint64(256), uint64(256), uint64(4), uint32(4), uint64(3), uint32(7), uint64(5))
	f.Add(uint8(2), uint8(2), uint64(max32), uint64(1), uint64(1), uint64(2), uint32(10), uint64(2), uint32(8), uint64(3))
	f.Add(uint8(0), uint8(1), uint64(max32), uint64(1<<31), uint64(1), uint64(2), uint32(3), uint64(MaxRateMilli), uint32(2), uint64(1))
	f.Add(uint8(2), uint8(0), uint64(200), uint64(130), uint64(50), uint64(2), uint32(10), uint64(0), uint32(9), uint64(1))
	f.Add(uint8(3), uint8(4), uint64(196), uint64(196), uint64(64), uint64(4), uint32(32), uint64(3), uint32(36), uint64(1024))
	f.Add(uint8(3), uint8(1), uint64(max32), uint64(4096), uint64(4096), uint64(2), uint32(35), uint64(1), uint32(39), uint64(1<<63))
	f.Fuzz(func(t *testing.T, kindSel, presetSel uint8, m, n, k, d uint64, id1 uint32, v1 uint64, id2 uint32, v2 uint64) {
		all := Presets()
		preset := all[int(presetSel)%len(all)]
		kind := Kinds()[int(kindSel)%len(Kinds())]
		p := preset.Params
		_ = p.Set(ParamID(id1), v1)
		_ = p.Set(ParamID(id2), v2)
		model, err := New(kind, p)
		if err != nil {
			t.Fatalf("%s from Set-only params %+v: %v", kind, p, err)
		}
		op := Op{M: m, N: n, K: k, DtypeSize: d}
		got, err := model.Estimate(op)
		if m == 0 || n == 0 || k == 0 || d == 0 {
			if !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("%v: want ErrInvalidOp, got %v", op, err)
			}
			return
		}
		want := oracleEstimate(kind, p, op)
		if want.overflows() {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("%s %v %+v: oracle overflows, got %+v, %v", kind, op, p, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s %v %+v: %v", kind, op, p, err)
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
				t.Fatalf("%s %v %+v: %s = %d, oracle %v", kind, op, p, q.name, q.got, q.want)
			}
		}
		if got.Cycles != max(got.ComputeCycles, got.MemoryCycles) {
			t.Fatalf("Cycles %d is not the max of %d and %d", got.Cycles, got.ComputeCycles, got.MemoryCycles)
		}
		if (got.Bound == BoundCompute) != (got.ComputeCycles > got.MemoryCycles) {
			t.Fatalf("Bound %v for compute %d memory %d", got.Bound, got.ComputeCycles, got.MemoryCycles)
		}
		u := float64(got.FLOPs) / (float64(max(got.Cycles, 1)) * want.peak)
		u = min(max(u, 0), 1)
		if got.Utilization < 0 || got.Utilization > 1 || got.Utilization != u {
			t.Fatalf("Utilization %v, want %v", got.Utilization, u)
		}
	})
}

// FuzzSet feeds Params.Set arbitrary CONFIGURE (param_id, value) pairs: it must either
// accept the value, which Get then returns unchanged, or reject it with a typed error and
// leave the parameters as they were.
func FuzzSet(f *testing.F) {
	f.Add(uint32(2), uint64(900000))
	f.Add(uint32(3), uint64(1410))
	f.Add(uint32(10), uint64(3))
	f.Add(uint32(0), uint64(1))
	f.Add(uint32(3), uint64(MaxRateMilli+1))
	f.Add(uint32(36), uint64(1<<11))
	f.Add(uint32(38), uint64(110))
	f.Fuzz(func(t *testing.T, id uint32, value uint64) {
		p, err := LookupPreset(DefaultPreset)
		if err != nil {
			t.Fatal(err)
		}
		before := p.Params
		params := p.Params
		if err := params.Set(ParamID(id), value); err != nil {
			if !errors.Is(err, ErrInvalidParam) && !errors.Is(err, ErrUnknownParam) {
				t.Fatalf("untyped error %v", err)
			}
			if params != before {
				t.Fatalf("Set(%d, %d) failed but changed the params", id, value)
			}
			return
		}
		back, err := params.Get(ParamID(id))
		if err != nil || back != value {
			t.Fatalf("Set(%d, %d) then Get = %d, %v", id, value, back, err)
		}
	})
}
