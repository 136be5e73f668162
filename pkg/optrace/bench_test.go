package optrace

import (
	"io"
	"testing"
	"time"
)

// BenchmarkRecorderAdd is the per-op cost of --trace and --op-log on the server's side:
// one record and its spans into both sinks (writing to io.Discard).
func BenchmarkRecorderAdd(b *testing.B) {
	tr, err := NewTrace(io.Discard, TraceOptions{Devices: 1})
	if err != nil {
		b.Fatal(err)
	}
	r := &Recorder{Trace: tr, Log: NewLog(io.Discard, 0)}
	rec := []Record{sampleRecord()}
	sp := &Spans{Conn: 3, Frame: 9, Name: "gemm", Start: time.Now(), Decode: 1500, Compute: 800, Timing: 6000, Total: 9000, HasCompute: true, HasTiming: true}
	b.ReportAllocs()
	for b.Loop() {
		r.Add(rec, sp)
	}
	b.StopTimer()
	_ = tr.Close()
	_ = r.Log.Close()
}
