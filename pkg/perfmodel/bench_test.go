package perfmodel

import "testing"

// benchOps mixes a square GEMM, a GEMV and shapes that divide neither tiles nor arrays.
var benchOps = []Op{
	{M: 1024, N: 1024, K: 1024, DtypeSize: 4},
	{M: 1, N: 4096, K: 4096, DtypeSize: 2},
	{M: 257, N: 130, K: 999, DtypeSize: 4},
	{M: max32, N: 1, K: 1, DtypeSize: 4},
}

func benchmarkModel(b *testing.B, preset string) {
	m, err := FromPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		e, err := m.Estimate(benchOps[i%len(benchOps)])
		if err != nil {
			b.Fatal(err)
		}
		sink += e.Cycles
	}
	_ = sink
}

func BenchmarkRoofline(b *testing.B) { benchmarkModel(b, DefaultPreset) }
func BenchmarkTiled(b *testing.B)    { benchmarkModel(b, "tiled-256") }
func BenchmarkSystolic(b *testing.B) { benchmarkModel(b, "tpu-128") }
