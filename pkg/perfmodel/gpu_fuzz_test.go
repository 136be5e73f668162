package perfmodel

import (
	"errors"
	"fmt"
	"testing"
)

// FuzzGPUBatched drives the gpu model's batched entry point with fuzzed shapes, batch
// counts and gpu parameters (set through the CONFIGURE encoding) and compares it with the
// arbitrary-precision oracle: the same numbers when everything fits, ErrOverflow exactly
// when a quantity does not, never a panic.
func FuzzGPUBatched(f *testing.F) {
	f.Add(uint8(4), uint64(196), uint64(196), uint64(64), uint64(4), uint64(12), uint32(32), uint64(3), uint32(36), uint64(1024))
	f.Add(uint8(1), uint64(4096), uint64(4096), uint64(4096), uint64(2), uint64(4), uint32(35), uint64(1), uint32(38), uint64(1))
	f.Add(uint8(0), uint64(max32), uint64(max32), uint64(1), uint64(4), uint64(1<<20), uint32(39), uint64(1<<40), uint32(37), uint64(1<<10))
	f.Add(uint8(2), uint64(1), uint64(1), uint64(1), uint64(1), uint64(1), uint32(33), uint64(1), uint32(34), uint64(1))
	f.Fuzz(func(t *testing.T, presetSel uint8, m, n, k, d, batch uint64, id1 uint32, v1 uint64, id2 uint32, v2 uint64) {
		all := Presets()
		p := all[int(presetSel)%len(all)].Params
		_ = p.Set(ParamID(id1), v1)
		_ = p.Set(ParamID(id2), v2)
		model, err := New(KindGPU, p)
		if err != nil {
			t.Fatalf("gpu from Set-only params %+v: %v", p, err)
		}
		op := Op{M: m, N: n, K: k, DtypeSize: d}
		got, err := EstimateBatched(model, op, batch)
		if m == 0 || n == 0 || k == 0 || d == 0 || batch == 0 {
			if !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("%v batch %d: want ErrInvalidOp, got %v", op, batch, err)
			}
			return
		}
		bw, _ := toMilli("", "", p.BandwidthGBps)
		clk, _ := toMilli("", "", p.ClockGHz)
		want := oracleGPU(p, op, batch, clk, bw)
		matchesOracle(t, fmt.Sprintf("%v batch %d %+v", op, batch, p.GPU), got, err, want)
	})
}
