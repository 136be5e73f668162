package sstcomponent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/perfmodel"
)

// gemmWant is a GEMM answer worked out by hand for the tutorial roofline:
// compute = floor(2MNK/64), memory = floor(bytes·1.41/900) = floor(bytes·1410/900000).
type gemmWant struct{ cycles, compute, memory, bytes uint64 }

func TestAnswers(t *testing.T) {
	echo := newReq(typeEcho, 2)
	for i := range 4080 {
		echo[offReqPayload+i] = byte(i*7 + 3)
	}
	tests := []struct {
		name   string
		req    rawReq
		status uint32
		result uint64
		check  func(t *testing.T, r rawResp)
	}{
		{name: "NOOP", req: newReq(typeNoop, 1), status: statusOK, result: 0},
		{name: "ECHO", req: echo, status: statusOK, result: 4080, check: func(t *testing.T, r rawResp) {
			assert.Equal(t, []byte(echo[24:4104]), []byte(r[32:4112]))
		}},
		// The reference charges 100 cycles per unit whatever latency_model says.
		{name: "COMPUTE latency_model 0", req: computeReq(3, 7, 0), status: statusOK, result: 700, check: computeWant(700, 0)},
		{name: "COMPUTE latency_model 1", req: computeReq(3, 7, 1), status: statusOK, result: 700, check: computeWant(700, 0)},
		{name: "COMPUTE latency_model 3", req: computeReq(3, 7, 3), status: statusOK, result: 700, check: computeWant(700, 0)},
		{name: "COMPUTE latency_model 0xFFFFFFFF", req: computeReq(3, 7, math.MaxUint32), status: statusOK, result: 700, check: computeWant(700, 0)},
		{name: "COMPUTE zero units", req: computeReq(3, 0, 0), status: statusOK, result: 0, check: computeWant(0, 0)},
		{name: "COMPUTE cycles overflow", req: computeReq(3, math.MaxUint64/100+1, 0), status: statusInvalid},
		// 4×16×8 fp32: flops 1024 → 16; bytes (32+128+64)·4 = 896 → floor(1.4037) = 1.
		{name: "GEMM tutorial 4x16x8", req: gemmReq(4, 4, 16, 8, 4), status: statusOK, result: 16,
			check: gemmCheck(gemmWant{cycles: 16, compute: 16, memory: 1, bytes: 896})},
		// 64³ fp32: flops 524288 → 8192; bytes 3·4096·4 = 49152 → floor(77.0048) = 77.
		{name: "GEMM 64 cubed", req: gemmReq(4, 64, 64, 64, 4), status: statusOK, result: 8192,
			check: gemmCheck(gemmWant{cycles: 8192, compute: 8192, memory: 77, bytes: 49152})},
		// 1×1×1 with 1000-byte elements: flops 2 → 0; bytes 3000 → floor(4.7) = 4.
		{name: "GEMM memory-bound", req: gemmReq(4, 1, 1, 1, 1000), status: statusOK, result: 4,
			check: gemmCheck(gemmWant{cycles: 4, compute: 0, memory: 4, bytes: 3000})},
		// 4096³ fp16: flops 2^37 → 2^31; bytes 3·2^24·2 = 100663296 → floor(157705.83).
		{name: "GEMM 4096 cubed fp16 (M·K overflows 32 bits in the reference)", req: gemmReq(4, 4096, 4096, 4096, 2),
			status: statusOK, result: 1 << 31,
			check: gemmCheck(gemmWant{cycles: 1 << 31, compute: 1 << 31, memory: 157705, bytes: 100663296})},
		// A batch on the roofline is batch × one GEMM, exactly: 3 × (16, 16, 1, 896).
		{name: "BATCHED_GEMM tutorial 4x16x8 batch 3", req: batchedGEMMReq(4, 4, 16, 8, 4, 3), status: statusOK, result: 48,
			check: gemmCheck(gemmWant{cycles: 48, compute: 48, memory: 3, bytes: 2688})},
		{name: "BATCHED_GEMM batch 1 is GEMM", req: batchedGEMMReq(4, 64, 64, 64, 4, 1), status: statusOK, result: 8192,
			check: gemmCheck(gemmWant{cycles: 8192, compute: 8192, memory: 77, bytes: 49152})},
		{name: "BATCHED_GEMM batch 0", req: batchedGEMMReq(4, 4, 16, 8, 4, 0), status: statusInvalid},
		{name: "BATCHED_GEMM zero K", req: batchedGEMMReq(4, 4, 16, 0, 4, 2), status: statusInvalid},
		{name: "BATCHED_GEMM 64-bit overflow", req: batchedGEMMReq(4, 4096, 4096, 4096, 4, math.MaxUint64), status: statusInvalid},
		{name: "GEMM zero M", req: gemmReq(4, 0, 16, 8, 4), status: statusInvalid},
		{name: "GEMM zero dtype_size", req: gemmReq(4, 4, 16, 8, 0), status: statusInvalid},
		{name: "GEMM 64-bit overflow", req: gemmReq(4, math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32), status: statusInvalid},
		{name: "READ untouched memory", req: readReq(5, 0x1000, 16), status: statusOK, result: 16, check: func(t *testing.T, r rawResp) {
			assert.Equal(t, make([]byte, 4080), []byte(r[32:]))
		}},
		{name: "READ 4080 bytes at the end of memory", req: readReq(5, 0x10000000-4080, 4080), status: statusOK, result: 4080},
		{name: "READ empty range at the end of memory", req: readReq(5, 0x10000000, 0), status: statusOK, result: 0},
		{name: "READ 4081 bytes", req: readReq(5, 0, 4081), status: statusInvalid},
		{name: "READ past the end of memory", req: readReq(5, 0x10000000-1, 2), status: statusInvalid},
		{name: "READ address overflow", req: readReq(5, math.MaxUint64, 1), status: statusInvalid},
		{name: "WRITE 4064 bytes", req: writeReq(6, 0, bytes.Repeat([]byte{1}, 4064)), status: statusOK, result: 4064},
		{name: "WRITE last byte of memory", req: writeReq(6, 0x10000000-1, []byte{9}), status: statusOK, result: 1},
		{name: "WRITE 4065 bytes", req: newReq(typeWrite, 6).u32(32, 4065), status: statusInvalid},
		{name: "WRITE size 2^32-1", req: newReq(typeWrite, 6).u32(32, math.MaxUint32), status: statusInvalid},
		{name: "WRITE past the end of memory", req: writeReq(6, 0x10000000-1, []byte{1, 2}), status: statusInvalid},
		{name: "GET_INFO", req: newReq(typeGetInfo, 7), status: statusOK, result: 0, check: func(t *testing.T, r rawResp) {
			assert.Equal(t, uint32(0x00010000), r.u32(32), "version")
			assert.Equal(t, uint32(1|2|4|32), r.u32(36), "capabilities ECHO|COMPUTE|MEMORY|RESET")
			assert.Equal(t, uint64(1000000), r.u64(40), "max_compute_units")
			assert.Equal(t, uint64(0x10000000), r.u64(48), "memory_size")
		}},
		{name: "CONFIGURE flops_per_cycle", req: configureReq(8, 1, 128), status: statusOK, result: 128},
		{name: "CONFIGURE undefined id 0", req: configureReq(8, 0, 1), status: statusInvalid},
		{name: "CONFIGURE undefined id 999", req: configureReq(8, 999, 1), status: statusInvalid},
		{name: "CONFIGURE zero value", req: configureReq(8, 1, 0), status: statusInvalid},
		{name: "RESET", req: newReq(typeReset, 9), status: statusOK, result: 0},
		{name: "unknown type 10", req: newReq(10, 10), status: statusInvalid},
		{name: "unknown type 2^32-1", req: newReq(math.MaxUint32, 10), status: statusInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Config{})
			r := roundTrip(t, h.dial(), tt.req)
			assert.Equal(t, tt.status, r.status(), "status")
			assert.Equal(t, le.Uint64(tt.req[offRequestID:]), r.requestID(), "request_id")
			assert.Equal(t, le.Uint64(tt.req[offUserData:]), r.userData(), "user_data")
			assert.Equal(t, tt.result, r.result(), "result")
			if tt.status == statusInvalid {
				assert.Equal(t, make([]byte, 4080), []byte(r[32:]), "an INVALID answer's payload is zero")
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func computeWant(cycles, timestamp uint64) func(*testing.T, rawResp) {
	return func(t *testing.T, r rawResp) {
		assert.Equal(t, cycles, r.u64(32), "cycles")
		assert.Equal(t, timestamp, r.u64(40), "timestamp")
	}
}

func gemmCheck(w gemmWant) func(*testing.T, rawResp) {
	return func(t *testing.T, r rawResp) {
		assert.Equal(t, w.cycles, r.u64(32), "cycles")
		assert.Equal(t, w.compute, r.u64(40), "compute cycles")
		assert.Equal(t, w.memory, r.u64(48), "memory cycles")
		assert.Equal(t, w.bytes, r.u64(56), "memory bytes")
		assert.Equal(t, uint32(0), r.u32(64), "result_offset")
	}
}

func TestMemoryReadBack(t *testing.T) {
	h := start(t, Config{})
	c := h.dial()
	// 100 bytes across the boundary of the first two 64 KiB pages.
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(200 - i)
	}
	const addr = 64<<10 - 50
	require.Equal(t, uint32(statusOK), roundTrip(t, c, writeReq(1, addr, data)).status())
	r := roundTrip(t, c, readReq(2, addr-10, 120))
	require.Equal(t, uint32(statusOK), r.status())
	want := append(append(make([]byte, 10), data...), make([]byte, 10)...)
	assert.Equal(t, want, []byte(r[32:152]))
	assert.Equal(t, make([]byte, 4080-120), []byte(r[152:]), "bytes past size are zero")
	assert.Equal(t, uint64(2*MemoryPageSize), h.comp.Stats().MemoryResident)

	// RESET zeroes device memory.
	require.Equal(t, uint32(statusOK), roundTrip(t, c, newReq(typeReset, 3)).status())
	r = roundTrip(t, c, readReq(4, addr, 100))
	assert.Equal(t, make([]byte, 100), []byte(r[32:132]))
	assert.Zero(t, h.comp.Stats().MemoryResident)
}

func TestConfigureAndReset(t *testing.T) {
	h := start(t, Config{})
	c := h.dial()
	gemm := func(id uint64) rawResp { return roundTrip(t, c, gemmReq(id, 4, 16, 8, 4)) }
	require.Equal(t, uint64(16), gemm(1).result())

	// 128 FLOP/cycle: compute 1024/128 = 8; memory still 1.
	require.Equal(t, uint32(statusOK), roundTrip(t, c, configureReq(2, uint32(perfmodel.ParamFLOPsPerCycle), 128)).status())
	gemmCheck(gemmWant{cycles: 8, compute: 8, memory: 1, bytes: 896})(t, gemm(3))

	// 1 MB/s at 1410 MHz: memory = floor(896·1410/1) = 1263360 cycles.
	require.Equal(t, uint32(statusOK), roundTrip(t, c, configureReq(4, uint32(perfmodel.ParamBandwidthMBps), 1)).status())
	gemmCheck(gemmWant{cycles: 1263360, compute: 8, memory: 1263360, bytes: 896})(t, gemm(5))

	// A rejected value leaves the model as it was.
	require.Equal(t, uint32(statusInvalid), roundTrip(t, c, configureReq(6, uint32(perfmodel.ParamClockMHz), 0)).status())
	assert.Equal(t, uint64(1263360), gemm(7).result())

	// RESET restores the start-up model; the clock keeps running.
	before := h.comp.SimCycles()
	require.Equal(t, uint32(statusOK), roundTrip(t, c, newReq(typeReset, 8)).status())
	assert.Equal(t, before, h.comp.SimCycles())
	assert.Equal(t, uint64(16), gemm(9).result())
	r := roundTrip(t, c, computeReq(10, 1, 3))
	assert.Equal(t, before+16, r.u64(40), "timestamps continue after RESET")
}

// TestComputeCostTable: with Config.ComputeCosts, COMPUTE charges the table's cost of its
// latency_model, and a latency_model beyond the table is INVALID.
func TestComputeCostTable(t *testing.T) {
	h := start(t, Config{ComputeCosts: LatencyModelCosts()})
	c := h.dial()
	tests := []struct {
		model  uint32
		status uint32
		result uint64
	}{
		{0, statusOK, 700}, {1, statusOK, 350}, {2, statusOK, 70}, {3, statusOK, 7}, {4, statusInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("latency_model %d", tt.model), func(t *testing.T) {
			r := roundTrip(t, c, computeReq(3, 7, tt.model))
			require.Equal(t, tt.status, r.status())
			assert.Equal(t, tt.result, r.result())
		})
	}
	_, err := New(Config{ComputeCosts: []uint64{}})
	assert.Error(t, err, "an empty table is refused")
}

// TestClock checks the simulated clock: each COMPUTE starts where the previous op ended,
// GEMMs occupy the device too, other requests take no time.
func TestClock(t *testing.T) {
	h := start(t, Config{ComputeCosts: LatencyModelCosts()})
	c := h.dial()
	steps := []struct {
		req       rawReq
		cycles    uint64
		timestamp uint64 // for COMPUTE
	}{
		{computeReq(1, 3, 0), 300, 0},
		{gemmReq(2, 4, 16, 8, 4), 16, 0}, // occupies [300, 316)
		{computeReq(3, 2, 1), 100, 316},
		{newReq(typeNoop, 4), 0, 0},
		{readReq(5, 0, 8), 8, 0}, // result = size, no time
		{computeReq(6, 5, 2), 50, 416},
		{computeReq(7, 0, 0), 0, 466},
		{computeReq(8, 1, 3), 1, 466},
	}
	for _, s := range steps {
		r := roundTrip(t, c, s.req)
		require.Equal(t, uint32(statusOK), r.status())
		require.Equal(t, s.cycles, r.result())
		if le.Uint32(s.req) == typeCompute {
			require.Equal(t, s.timestamp, r.u64(40), "timestamp of request %d", r.requestID())
		}
	}
	assert.Equal(t, uint64(467), h.comp.SimCycles())
}

func TestClockSaturates(t *testing.T) {
	var c simClock
	c.now.Store(math.MaxUint64 - 10)
	assert.Equal(t, uint64(math.MaxUint64-10), c.advance(5))
	assert.Equal(t, uint64(math.MaxUint64-5), c.advance(100))
	assert.Equal(t, uint64(math.MaxUint64), c.load())
	assert.Equal(t, uint64(math.MaxUint64), c.advance(1))
}

// TestSplitRequests writes requests one byte at a time.
func TestSplitRequests(t *testing.T) {
	h := start(t, Config{})
	c := h.dial()
	for id := uint64(1); id <= 3; id++ {
		req := gemmReq(id, 4, 16, 8, 4)
		for i := range req {
			_, err := c.Write(req[i : i+1])
			require.NoError(t, err)
		}
		r := readResp(t, c)
		require.Equal(t, id, r.requestID())
		require.Equal(t, uint64(16), r.result())
	}
}

// TestSplitRequestsPipe does the same over net.Pipe, where every one-byte write is
// delivered as its own one-byte read.
func TestSplitRequestsPipe(t *testing.T) {
	comp, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- comp.ServeConn(context.Background(), server) }()
	require.NoError(t, client.SetDeadline(time.Now().Add(testTimeout)))
	req := computeReq(42, 3, 0)
	for i := range req {
		_, err := client.Write(req[i : i+1])
		require.NoError(t, err)
	}
	r := readResp(t, client)
	assert.Equal(t, uint64(42), r.requestID())
	assert.Equal(t, uint64(300), r.result())
	require.NoError(t, client.Close())
	require.NoError(t, <-done)
}

// TestPipelined sends 1000 requests before reading any answer. Request i is a unit-cost
// COMPUTE of i units, so it starts at cycle 0+1+…+(i-1) = i(i-1)/2.
func TestPipelined(t *testing.T) {
	const n = 1000
	h := start(t, Config{ComputeCosts: LatencyModelCosts()})
	c := h.dial()
	var stream []byte
	for i := range uint64(n) {
		stream = append(stream, computeReq(i, i, 3)...)
	}
	werr := make(chan error, 1)
	go func() { _, err := c.Write(stream); werr <- err }()
	for i := range uint64(n) {
		r := readResp(t, c)
		require.Equal(t, i, r.requestID(), "answers in request order")
		require.Equal(t, i, r.result())
		require.Equal(t, i*(i-1)/2, r.u64(40), "timestamp of request %d", i)
	}
	require.NoError(t, <-werr)
	assert.Equal(t, uint64(n*(n-1)/2), h.comp.SimCycles())
}

// TestConcurrentConnections interleaves 8 connections of 200 one-cycle COMPUTEs: each sees
// its own answers in order with increasing timestamps, and the device serialises all 1600
// ops, so the timestamps are exactly 0…1599.
func TestConcurrentConnections(t *testing.T) {
	const conns, perConn = 8, 200
	h := start(t, Config{ComputeCosts: LatencyModelCosts()})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = make(map[uint64]bool)
	)
	for k := range uint64(conns) {
		c := h.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(-1)
			for i := range uint64(perConn) {
				id := k<<32 | i
				r := roundTrip(t, c, computeReq(id, 1, 3))
				assert.Equal(t, id, r.requestID())
				ts := r.u64(40)
				assert.Greater(t, int64(ts), last, "timestamps increase on a connection")
				last = int64(ts)
				mu.Lock()
				assert.False(t, seen[ts], "timestamp %d given twice", ts)
				seen[ts] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, conns*perConn)
	for ts := range uint64(conns * perConn) {
		require.True(t, seen[ts], "timestamp %d missing", ts)
	}
	s := h.comp.Stats()
	assert.Equal(t, uint64(conns*perConn), s.Requests[typeCompute])
	assert.Equal(t, uint64(conns), s.Connections)
}

func TestHostileInput(t *testing.T) {
	t.Run("truncated request then EOF", func(t *testing.T) {
		h := start(t, Config{})
		c := h.dial()
		_, err := c.Write(append(computeReq(1, 1, 0), make([]byte, 100)...))
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		r := readResp(t, c)
		assert.Equal(t, uint64(100), r.result(), "the whole request before the tail is answered")
		n, err := c.Read(make([]byte, 1))
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, io.EOF, "then the connection ends")
		require.Eventually(t, func() bool { return h.comp.Stats().Truncated == 1 }, testTimeout, time.Millisecond)
		// The component still serves new connections.
		assert.Equal(t, uint32(statusOK), roundTrip(t, h.dial(), newReq(typeNoop, 2)).status())
	})
	t.Run("short request only", func(t *testing.T) {
		h := start(t, Config{})
		c := h.dial()
		_, err := c.Write([]byte{1, 2, 3})
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		_, err = c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
	})
	t.Run("garbage", func(t *testing.T) {
		h := start(t, Config{})
		c := h.dial()
		rng := rand.New(rand.NewPCG(1, 2))
		garbage := make([]byte, 64*reqSize)
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		werr := make(chan error, 1)
		go func() { _, err := c.Write(garbage); werr <- err }()
		for i := range 64 {
			r := readResp(t, c)
			require.Equal(t, le.Uint64(garbage[i*reqSize+8:]), r.requestID())
			require.Equal(t, le.Uint64(garbage[i*reqSize+16:]), r.userData())
		}
		require.NoError(t, <-werr)
		// The connection survives.
		assert.Equal(t, uint32(statusOK), roundTrip(t, c, newReq(typeNoop, 1)).status())
		assert.Equal(t, uint64(65), h.comp.Stats().Total)
	})
	t.Run("every type with random payloads", func(t *testing.T) {
		h := start(t, Config{})
		c := h.dial()
		rng := rand.New(rand.NewPCG(3, 4))
		for typ := range uint32(12) {
			for i := range 20 {
				req := newReq(typ, uint64(i))
				for j := 24; j < reqSize; j++ {
					req[j] = byte(rng.Uint32())
				}
				r := roundTrip(t, c, req)
				require.Contains(t, []uint32{statusOK, statusInvalid}, r.status())
				if typ > typeGEMM {
					require.Equal(t, uint32(statusInvalid), r.status())
				}
			}
		}
	})
}

func TestStatsAndReports(t *testing.T) {
	h := start(t, Config{Name: "virtio_llama", ClockHz: 2e9, ComputeCosts: LatencyModelCosts()})
	c := h.dial()
	for _, req := range []rawReq{
		newReq(typeNoop, 1), newReq(typeEcho, 2),
		computeReq(3, 3, 0), computeReq(4, 1, 1), computeReq(5, 5, 2), computeReq(6, 0, 0), computeReq(7, 1, 3),
		computeReq(8, 1, 9),                                                          // INVALID
		gemmReq(9, 4, 16, 8, 4), gemmReq(10, 1, 1, 1, 1000), gemmReq(11, 0, 1, 1, 4), // last INVALID
		writeReq(12, 0, []byte("abc")), readReq(13, 0, 10), readReq(14, 1<<40, 1), // last INVALID
		newReq(typeGetInfo, 15), newReq(77, 16), // last INVALID
		batchedGEMMReq(17, 4, 16, 8, 4, 5), batchedGEMMReq(18, 4, 16, 8, 4, 0), // last INVALID
	} {
		roundTrip(t, c, req)
	}
	s := h.comp.Stats()
	assert.Equal(t, uint64(18), s.Total)
	assert.Equal(t, [11]uint64{1, 1, 6, 2, 1, 0, 1, 0, 3, 2, 0}, s.Requests)
	assert.Equal(t, uint64(1), s.Unknown)
	assert.Equal(t, uint64(5), s.Invalid)
	assert.Equal(t, uint64(1), s.Connections)
	// COMPUTE cycles 300, 50, 50, 0, 1; GEMMs 16 (compute-bound) and 4 (memory-bound);
	// a batch of 5 GEMMs of the first shape, 5 × 16 = 80 (compute-bound).
	assert.Equal(t, Accumulator{Count: 5, Sum: 401, SumSQ: 90000 + 2500 + 2500 + 0 + 1, Min: 0, Max: 300}, s.Compute)
	assert.Equal(t, Accumulator{Count: 3, Sum: 100, SumSQ: 256 + 16 + 6400, Min: 4, Max: 80}, s.GEMM.Cycles)
	assert.Equal(t, Accumulator{Count: 3, Sum: 1026 + 5120, SumSQ: 1024*1024 + 4 + 5120*5120, Min: 2, Max: 5120}, s.GEMM.FLOPs)
	assert.Equal(t, uint64(896+3000+5*896), s.GEMM.MemoryBytes.Sum)
	assert.Equal(t, uint64(16+80), s.GEMM.ComputeCycles.Sum)
	assert.Equal(t, uint64(1+4+5), s.GEMM.MemoryCycles.Sum)
	assert.Equal(t, uint64(2), s.GEMM.ComputeBound)
	assert.Equal(t, uint64(1), s.GEMM.MemoryBound)
	assert.Equal(t, Accumulator{Count: 1, Sum: 5, SumSQ: 25, Min: 5, Max: 5}, s.GEMM.Batched)
	assert.Equal(t, uint64(3), s.Write.Sum)
	assert.Equal(t, uint64(10), s.Read.Sum)
	assert.Equal(t, uint64(501), s.SimCycles)
	assert.Equal(t, uint64(501*500), s.SimTimePS, "2 GHz is 500 ps a cycle")
	assert.Equal(t, "roofline", s.Model)

	var report bytes.Buffer
	require.NoError(t, h.comp.WriteReport(&report))
	for _, line := range []string{
		"VirtIODevice[virtio_llama:finish] Statistics:\n",
		"VirtIODevice[virtio_llama:finish]   Total requests: 18\n",
		"VirtIODevice[virtio_llama:finish]   BATCHED_GEMM requests: 2\n",
		"VirtIODevice[virtio_llama:finish]     Batches of equal GEMMs (BATCHED_GEMM requests, GEMM_LIST entries): 1, carrying 5 GEMMs\n",
		"VirtIODevice[virtio_llama:finish]   NOOP requests: 1\n",
		"VirtIODevice[virtio_llama:finish]   ECHO requests: 1\n",
		"VirtIODevice[virtio_llama:finish]   COMPUTE requests: 6\n",
		"VirtIODevice[virtio_llama:finish]   GEMM requests: 3\n",
		"VirtIODevice[virtio_llama:finish]   INVALID responses: 5\n",
		"VirtIODevice[virtio_llama:finish]   Simulated cycles: 501 (250.5 ns at 2GHz)\n",
		"VirtIODevice[virtio_llama:finish]     GEMMs simulated: 7\n",
		"VirtIODevice[virtio_llama:finish]     Compute-bound: 2, memory-bound: 1\n",
		"Simulation is complete, simulated time: 250.5 ns\n",
	} {
		assert.Contains(t, report.String(), line)
	}

	var csv bytes.Buffer
	require.NoError(t, h.comp.WriteCSV(&csv))
	lines := bytes.Split(bytes.TrimSuffix(csv.Bytes(), []byte("\n")), []byte("\n"))
	assert.Equal(t, "ComponentName, StatisticName, StatisticSubId, StatisticType, SimTime, Rank, Sum.u64, SumSQ.u64, Count.u64, Min.u64, Max.u64", string(lines[0]))
	rows := make(map[string]string)
	for _, l := range lines[1:] {
		f := bytes.SplitN(l, []byte(", "), 3)
		require.Len(t, f, 3)
		assert.Equal(t, "virtio_llama", string(f[0]))
		rows[string(f[1])] = string(l)
	}
	assert.Equal(t, "virtio_llama, requests, , Accumulator, 250500, 0, 18, 18, 18, 1, 1", rows["requests"])
	assert.Equal(t, "virtio_llama, requests_compute, , Accumulator, 250500, 0, 6, 6, 6, 1, 1", rows["requests_compute"])
	assert.Equal(t, "virtio_llama, requests_batched_gemm, , Accumulator, 250500, 0, 2, 2, 2, 1, 1", rows["requests_batched_gemm"])
	assert.Equal(t, "virtio_llama, requests_reset, , Accumulator, 250500, 0, 0, 0, 0, 0, 0", rows["requests_reset"])
	assert.Equal(t, "virtio_llama, compute_cycles, , Accumulator, 250500, 0, 401, 95001, 5, 0, 300", rows["compute_cycles"])
	assert.Equal(t, "virtio_llama, gemm_cycles, , Accumulator, 250500, 0, 100, 6672, 3, 4, 80", rows["gemm_cycles"])
	assert.Equal(t, "virtio_llama, gemm_batch, , Accumulator, 250500, 0, 5, 25, 1, 5, 5", rows["gemm_batch"])
	assert.Equal(t, "virtio_llama, busy_cycles, , Accumulator, 250500, 0, 501, 101673, 8, 0, 300", rows["busy_cycles"])
	assert.Equal(t, "virtio_llama, responses_invalid, , Accumulator, 250500, 0, 5, 5, 5, 1, 1", rows["responses_invalid"])
}

func TestAccumulator(t *testing.T) {
	var a, b Accumulator
	for _, v := range []uint64{5, 2, 9} {
		a.Add(v)
	}
	assert.Equal(t, Accumulator{Count: 3, Sum: 16, SumSQ: 25 + 4 + 81, Min: 2, Max: 9}, a)
	b.Add(1)
	b.Add(math.MaxUint64)
	assert.Equal(t, Accumulator{Count: 2, Sum: math.MaxUint64, SumSQ: math.MaxUint64, Min: 1, Max: math.MaxUint64}, b, "sums saturate")
	a.Merge(b)
	assert.Equal(t, Accumulator{Count: 5, Sum: math.MaxUint64, SumSQ: math.MaxUint64, Min: 1, Max: math.MaxUint64}, a)
	var empty Accumulator
	empty.Merge(Accumulator{})
	assert.Equal(t, Accumulator{}, empty)
}

// stalledConn delivers data, then blocks reads until a read deadline is set; it records
// what was written and lets a test hold the first write.
type stalledConn struct {
	mu        sync.Mutex
	data      *bytes.Reader
	delivered int
	out       bytes.Buffer
	deadline  chan struct{}
	once      sync.Once
	writing   chan struct{} // closed when the first write starts
	gate      chan struct{} // the first write waits for it
	wonce     sync.Once
}

func (s *stalledConn) Read(p []byte) (int, error) {
	select {
	case <-s.deadline:
		return 0, errors.New("i/o timeout")
	default:
	}
	s.mu.Lock()
	if s.data.Len() > 0 {
		n, _ := s.data.Read(p[:min(len(p), 3*reqSize+17)])
		s.delivered += n
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	<-s.deadline
	return 0, errors.New("i/o timeout")
}

func (s *stalledConn) Write(p []byte) (int, error) {
	s.wonce.Do(func() { close(s.writing); <-s.gate })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *stalledConn) SetReadDeadline(time.Time) error {
	s.once.Do(func() { close(s.deadline) })
	return nil
}

func (s *stalledConn) Close() error { return nil }

// TestShutdownAnswersReceivedRequests: Shutdown lets a connection answer every whole
// request it has received, then ServeConn returns nil.
func TestShutdownAnswersReceivedRequests(t *testing.T) {
	comp, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	var stream []byte
	for i := range uint64(40) {
		stream = append(stream, computeReq(i, 1, 3)...)
	}
	sc := &stalledConn{data: bytes.NewReader(stream), deadline: make(chan struct{}),
		writing: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- comp.ServeConn(context.Background(), sc) }()
	<-sc.writing // the first batch is being written; more requests are buffered
	shut := make(chan error, 1)
	go func() { shut <- comp.Shutdown(context.Background()) }()
	<-sc.deadline
	close(sc.gate)
	require.NoError(t, <-done)
	require.NoError(t, <-shut)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	whole := sc.delivered / reqSize
	require.Positive(t, whole)
	require.Equal(t, whole*respSize, sc.out.Len(), "one answer per whole request received")
	for i := range whole {
		require.Equal(t, uint64(i), le.Uint64(sc.out.Bytes()[i*respSize+8:]))
	}
	assert.ErrorIs(t, comp.ServeConn(context.Background(), sc), ErrClosed)
}

func TestShutdownClosesIdleConnections(t *testing.T) {
	h := start(t, Config{})
	c := h.dial()
	require.Equal(t, uint32(statusOK), roundTrip(t, c, newReq(typeNoop, 1)).status())
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	require.NoError(t, h.comp.Shutdown(ctx))
	_, err := c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	assert.ErrorIs(t, <-h.served, ErrClosed)
	h.served <- ErrClosed // for the cleanup's check
	assert.NoFileExists(t, h.path, "Shutdown removes the socket file")
	_, err = net.Dial("unix", h.path)
	assert.Error(t, err)
}

// TestShutdownDeadline: a client that never reads its answers cannot hold Shutdown past
// its context.
func TestShutdownDeadline(t *testing.T) {
	comp, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	path := t.TempDir() + "/s.sock"
	l, err := Listen(path)
	require.NoError(t, err)
	go func() { _ = comp.Serve(l) }()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	var stream []byte
	for i := range uint64(400) {
		stream = append(stream, newReq(typeEcho, i)...)
	}
	go func() { _, _ = c.Write(stream) }() // fails once the component closes the connection
	// Wait until the component is stuck writing answers nobody reads.
	last, same := uint64(0), 0
	require.Eventually(t, func() bool {
		n := comp.Stats().Total
		if n > 0 && n == last {
			same++
		} else {
			same = 0
		}
		last = n
		return same == 3
	}, testTimeout, 50*time.Millisecond)
	require.Less(t, last, uint64(400))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, comp.Shutdown(ctx), context.DeadlineExceeded)
	require.Eventually(t, func() bool {
		comp.mu.Lock()
		defer comp.mu.Unlock()
		return len(comp.conns) == 0
	}, testTimeout, time.Millisecond, "the forced close ends the connection")
}

func TestServeConnCancel(t *testing.T) {
	comp, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- comp.ServeConn(ctx, server) }()
	require.NoError(t, client.SetDeadline(time.Now().Add(testTimeout)))
	assert.Equal(t, uint64(300), roundTrip(t, client, computeReq(1, 3, 0)).result())
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(testTimeout):
		t.Fatal("ServeConn did not return after cancellation")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"unknown model", Config{Model: "quantum", Params: tutorialParams()}},
		{"zero bandwidth", Config{Model: "roofline", Params: perfmodel.Params{FLOPsPerCycle: 64, ClockGHz: 1}}},
		{"clock period below 1 ps", Config{ClockHz: 3e12}},
		{"negative clock", Config{ClockHz: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			assert.Error(t, err)
		})
	}
	c, err := New(Config{})
	require.NoError(t, err, "the zero Config is the reference component with the default preset")
	assert.Equal(t, DefaultName, c.Name())
	assert.Equal(t, "roofline", c.Stats().Model)
}

func TestDebugLog(t *testing.T) {
	var buf bytes.Buffer
	h := start(t, Config{Logger: zerolog.New(&buf).Level(zerolog.DebugLevel)})
	c := h.dial()
	roundTrip(t, c, gemmReq(5, 4, 16, 8, 4))
	roundTrip(t, c, newReq(99, 6))
	require.NoError(t, c.Close())
	require.NoError(t, h.comp.Shutdown(context.Background()))
	out := buf.String()
	assert.Contains(t, out, `"type":"GEMM","id":5,"result":16,"M":4,"N":16,"K":8,"dtype_size":4,"compute_cycles":16,"memory_cycles":1,"memory_bytes":896`)
	assert.Contains(t, out, `UNKNOWN(99) request 6: unknown request type`)
	assert.Contains(t, out, `"message":"client connected"`)
}

// TestBatchedGEMMOnGPU checks that the gpu model answers a BATCHED_GEMM as one kernel:
// the answer is perfmodel.EstimateBatched's, and the batch pays the kernel's fixed cost
// once, so it takes fewer cycles than batch separate GEMMs.
func TestBatchedGEMMOnGPU(t *testing.T) {
	preset, err := perfmodel.LookupPreset("h100-sxm")
	require.NoError(t, err)
	model, err := perfmodel.New(perfmodel.KindGPU, preset.Params)
	require.NoError(t, err)
	for _, tt := range []struct {
		m, n, k, dtype uint32
		batch          uint64
	}{{64, 64, 64, 4, 12}, {512, 512, 64, 4, 96}, {128, 256, 1024, 2, 7}, {1, 1, 1, 4, 1}} {
		t.Run(fmt.Sprintf("%dx%dx%d_dtype%d_batch%d", tt.m, tt.n, tt.k, tt.dtype, tt.batch), func(t *testing.T) {
			h := start(t, Config{Model: perfmodel.KindGPU, Params: preset.Params})
			op := perfmodel.Op{M: uint64(tt.m), N: uint64(tt.n), K: uint64(tt.k), DtypeSize: uint64(tt.dtype)}
			want, err := perfmodel.EstimateBatched(model, op, tt.batch)
			require.NoError(t, err)
			one, err := model.Estimate(op)
			require.NoError(t, err)
			r := roundTrip(t, h.dial(), batchedGEMMReq(1, tt.m, tt.n, tt.k, tt.dtype, tt.batch))
			require.Equal(t, uint32(statusOK), r.status())
			gemmCheck(gemmWant{cycles: want.Cycles, compute: want.ComputeCycles, memory: want.MemoryCycles, bytes: want.MemoryBytes})(t, r)
			assert.Equal(t, want.Cycles, r.result())
			if tt.batch > 1 {
				assert.Less(t, want.Cycles, tt.batch*one.Cycles, "one kernel, not batch kernels")
			} else {
				assert.Equal(t, one, want)
			}
		})
	}
}
