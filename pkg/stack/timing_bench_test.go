package stack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sstemu/sstemu/internal/cputime"
	"github.com/sstemu/sstemu/pkg/loadgen"
	"github.com/sstemu/sstemu/pkg/optrace"
	"github.com/sstemu/sstemu/pkg/stack"
)

// timeFrame builds a TIME request of entries GEMM entries: distinct shapes (M = 1 …
// entries), or the LLaMA-2-70B decoder layer's seven GEMM shapes repeated.
func timeFrame(entries int, distinct bool) []byte {
	llama := [][3]int{{4096, 8192, 8192}, {4096, 1024, 8192}, {4096, 1024, 8192}, {4096, 8192, 8192},
		{4096, 28672, 8192}, {4096, 28672, 8192}, {4096, 8192, 28672}}
	parts := make([]string, entries)
	for i := range parts {
		s := llama[i%len(llama)]
		if distinct {
			s = [3]int{i + 1, 128, 256}
		}
		parts[i] = fmt.Sprintf(`{"op": "gemm", "M": %d, "N": %d, "K": %d}`, s[0], s[1], s[2])
	}
	js := `{"op_id": 1, "ops": [` + strings.Join(parts, ", ") + `]}`
	b := binary.BigEndian.AppendUint32(nil, 0xDEADBEEF)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	return append(append(b, 0x04), js...)
}

// firstRecord is the part of a TIME answer's first record the benchmark splits by layer.
type firstRecord struct {
	ServerUS struct {
		Decode, Timing, Total float64
	} `json:"server_us"`
}

// checkAnswer checks a TIME answer cheaply, so that the client's cost stays small next
// to the server's: entries records all timed, the first one decoded (records end "}}").
func checkAnswer(body []byte, entries int) (firstRecord, error) {
	var r firstRecord
	if n := bytes.Count(body, []byte(`"timed":true`)); n != entries {
		return r, fmt.Errorf("%d of %d entries timed: %.300s", n, entries, body)
	}
	start := bytes.IndexByte(body[1:], '{') + 1
	end := bytes.Index(body, []byte("}},"))
	if start <= 0 || end < start {
		return r, fmt.Errorf("no first record: %.300s", body)
	}
	return r, json.Unmarshal(body[start:end+2], &r)
}

// BenchmarkTIME is issue 11's TIME target: GEMM entries timed through all five layers over
// one connection, in frames of 1000 entries. Reports entries/s, and per frame the server's
// decode (layer 1: JSON and shape rules), timing (layers 2–5) and the rest of its time
// (records, the answer's encoding and write), from the records' server_us, and the
// process's CPU time per frame (server and client).
func BenchmarkTIME(b *testing.B) {
	for _, distinct := range []bool{true, false} {
		name := map[bool]string{true: "distinct-shapes", false: "llama-shapes"}[distinct]
		b.Run(name, func(b *testing.B) {
			st, err := stack.Build(context.Background(), stack.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = st.Front().Serve(l) }()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 1<<20)
			const entries = 1000
			frame := timeFrame(entries, distinct)
			var body []byte
			var decode, timing, total float64
			b.ResetTimer()
			cpu0 := cputime.Of(b)
			for b.Loop() {
				if _, err := c.Write(frame); err != nil {
					b.Fatal(err)
				}
				var pre [4]byte
				if _, err := io.ReadFull(br, pre[:]); err != nil {
					b.Fatal(err)
				}
				n := int(binary.BigEndian.Uint32(pre[:]))
				if cap(body) < n {
					body = make([]byte, n)
				}
				body = body[:n]
				if _, err := io.ReadFull(br, body); err != nil {
					b.Fatal(err)
				}
				r, err := checkAnswer(body, entries)
				if err != nil {
					b.Fatal(err)
				}
				us := r.ServerUS
				decode += us.Decode
				timing += us.Timing
				total += us.Total
			}
			cpu := cputime.Of(b) - cpu0
			n := float64(b.N)
			b.ReportMetric(entries*n/b.Elapsed().Seconds(), "entries/s")
			// Server and client share the process: its CPU time per frame is both, and is
			// what a loaded machine distorts least.
			b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/frame")
			b.ReportMetric(decode/n, "decode-µs/frame")
			b.ReportMetric(timing/n, "timing-µs/frame")
			b.ReportMetric((total-decode-timing)/n, "records-µs/frame")
			_ = c.Close()
			_ = st.Front().Close()
		})
	}
}

// serveStack builds the in-process stack, serves its front end on a loopback port and
// returns the address.
func serveStack(b *testing.B, rec *optrace.Recorder) string {
	st, err := stack.Build(context.Background(), stack.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st.Front().Recorder = rec
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = st.Front().Serve(l) }()
	b.Cleanup(func() { _ = st.Front().Close(); _ = st.Close() })
	return l.Addr().String()
}

// BenchmarkRecordedConns32 is issue 11's recording target in one process: 32 connections of
// 4×16×8 ops on a stack without and one with a trace and an op log (files in a temporary
// directory), in turn; reports both rates and the median per-iteration ratio.
func BenchmarkRecordedConns32(b *testing.B) {
	dir := b.TempDir()
	tf, err := os.Create(filepath.Join(dir, "trace.json"))
	if err != nil {
		b.Fatal(err)
	}
	lf, err := os.Create(filepath.Join(dir, "ops.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := optrace.NewTrace(tf, optrace.TraceOptions{Devices: 1})
	if err != nil {
		b.Fatal(err)
	}
	rec := &optrace.Recorder{Trace: tr, Log: optrace.NewLog(lf, 0)}
	addrs := [2]string{serveStack(b, nil), serveStack(b, rec)}
	var ratios []float64
	var rates [2]float64
	for i := 0; b.Loop(); i++ {
		var r [2]float64
		for j := range addrs {
			s := (i + j) % 2
			rep, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addrs[s], M: 4, N: 16, K: 8, Conns: 32, Ops: 3200, Warmup: 2})
			if err != nil || rep.Errors > 0 {
				b.Fatalf("%v %s", err, rep.FirstError)
			}
			r[s] = rep.OpsPerSec
			rates[s] += rep.OpsPerSec
		}
		ratios = append(ratios, r[1]/r[0])
	}
	b.StopTimer()
	slices.Sort(ratios)
	b.ReportMetric(rates[0]/float64(len(ratios)), "plain-ops/s")
	b.ReportMetric(rates[1]/float64(len(ratios)), "recorded-ops/s")
	b.ReportMetric(ratios[(len(ratios)-1)/2], "recorded/plain-paired")
	_ = tr.Close()
	_ = rec.Log.Close()
	_ = tf.Close()
	_ = lf.Close()
}
