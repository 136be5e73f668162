package tcpfront

import (
	"context"
	"encoding/binary"
	"math/bits"
	"net"
	"strconv"
	"time"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/optrace"
	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// EntryTimer is implemented by an Executor that can time a TIME frame's entries without
// numerics (deviceserver.Server does): all on one device, whose index it returns (-1:
// none), one Timing per entry in order.
type EntryTimer interface {
	TimeEntries(ctx context.Context, entries [][]linalg.GEMMBatch) (device int, timings []deviceserver.Timing)
}

// Info is what the server says about itself in answer to INFO, beside its limits.
type Info struct {
	// Version is sstemu's version.
	Version string
	// Devices is the number of devices ops are timed on.
	Devices int
	// Params are the performance model's parameters when layer 5 is in-process (array,
	// dataflow and tile come from them); nil otherwise.
	Params *perfmodel.Params
	// TimingModes returns, per device, the request its GEMMs are timed with now ("gemm"
	// or "compute", deviceserver.Server.TimingModes); nil leaves INFO's list empty.
	TimingModes func() []string
}

// WireVersion is the version of the DeviceGEMM wire protocol of docs/wire.md that INFO
// reports: 1 is the reference's GEMM with CONV, MATMUL, the timing trailer, TIME and INFO.
const WireVersion = 1

// opName is the "op" of a record for an op type.
func opName(t deviceserver.OpType) string {
	switch t {
	case deviceserver.OpGEMM:
		return opNameGEMM
	case deviceserver.OpConv:
		return opNameConv
	case deviceserver.OpMatmul:
		return opNameMatmul
	case OpTime:
		return "time"
	case OpInfo:
		return "info"
	}
	return "unknown"
}

// untimedReason is the record's untimed_reason for t: "" when timed.
func untimedReason(t *deviceserver.Timing) string {
	if t.Timed {
		return ""
	}
	return t.Untimed.String()
}

// fillTiming copies layer 2's timing into r, and, when untimed, the operand bytes as its
// memory_bytes (the roofline's count: what the op's GEMMs must move at least).
func fillTiming(r *optrace.Record, t *deviceserver.Timing, operandBytes uint64) {
	r.Timed = t.Timed
	r.UntimedReason = untimedReason(t)
	r.Requests = t.Requests
	switch t.Kind {
	case protocol.ReqGEMM:
		r.TimingRequest = deviceserver.TimingGEMM.String()
	case protocol.ReqBatchedGEMM:
		r.TimingRequest = deviceserver.TimingBatchedGEMM
	case protocol.ReqGEMMList:
		r.TimingRequest = deviceserver.TimingGEMMList
	case protocol.ReqCompute:
		r.TimingRequest = deviceserver.TimingCompute.String()
	}
	if t.Timed {
		r.Cycles, r.ComputeCycles, r.MemoryCycles, r.MemoryBytes = t.Cycles, t.ComputeCycles, t.MemoryCycles, t.MemoryBytes
	} else {
		r.MemoryBytes = operandBytes
	}
}

// opRecord builds the timing record of an op that layer 2 has answered, placing it on its
// device's timeline when it was timed.
func (s *Server) opRecord(op *deviceserver.Op, res *deviceserver.Result, work opWork, decode, total time.Duration) optrace.Record {
	r := optrace.Record{OpID: op.ID, Index: -1, Op: opName(op.Type), Device: res.Device,
		FLOPs: work.flops, GEMMs: work.gemms}
	fillTiming(&r, &res.Timing, work.bytes)
	if r.Timed {
		r.StartCycle, r.EndCycle = s.timeline.Reserve(res.Device, r.Cycles)
	}
	s.Layer5.Describe(&r)
	r.ServerUS = optrace.ServerUS{Decode: decode, Compute: res.ComputeTime, Timing: res.TimingTime, Total: total}
	return r
}

// opWork is what an op's GEMMs add up to: their count, FLOPs and operand bytes.
type opWork struct{ gemms, flops, bytes uint64 }

// workOf sums batches with overflow checks (saturating: an op that can be computed is far
// from overflowing).
func workOf(batches []linalg.GEMMBatch) opWork {
	var e TimeEntry
	if e.sum(batches) != "" {
		return opWork{gemms: satSum(batches), flops: ^uint64(0), bytes: ^uint64(0)}
	}
	return opWork{gemms: e.GEMMs, flops: e.FLOPs, bytes: e.OperandBytes}
}

func satSum(batches []linalg.GEMMBatch) uint64 {
	var n uint64
	for _, b := range batches {
		s, c := bits.Add64(n, uint64(b.Count), 0)
		if c != 0 {
			return ^uint64(0)
		}
		n = s
	}
	return n
}

// timeFrame times a TIME frame's entries and returns their records, in order.
func (s *Server) timeFrame(ctx context.Context, f *TimeFrame, decode time.Duration, start time.Time) ([]optrace.Record, time.Duration) {
	recs := make([]optrace.Record, len(f.Entries))
	batches := make([][]linalg.GEMMBatch, 0, len(f.Entries))
	which := make([]int, 0, len(f.Entries)) // entry index of each batches element
	for i := range f.Entries {
		e := &f.Entries[i]
		recs[i] = optrace.Record{OpID: e.OpID, Index: i, Op: e.Op, Device: -1, FLOPs: e.FLOPs, GEMMs: e.GEMMs}
		if e.Err != "" {
			// A shape the device cannot take; the record's "error" says what is wrong.
			recs[i].UntimedReason, recs[i].Error = deviceserver.UntimedInvalidShape.String(), e.Err
			continue
		}
		batches = append(batches, e.Batches)
		which = append(which, i)
	}
	t0 := time.Now()
	device, timings := -1, []deviceserver.Timing(nil)
	if et, ok := s.Executor.(EntryTimer); ok && len(batches) > 0 {
		device, timings = et.TimeEntries(ctx, batches)
	}
	timing := time.Since(t0)
	for j, i := range which {
		r := &recs[i]
		r.Device = device
		if timings == nil {
			r.UntimedReason = deviceserver.UntimedNoDevice.String()
			r.MemoryBytes = f.Entries[i].OperandBytes
			continue
		}
		fillTiming(r, &timings[j], f.Entries[i].OperandBytes)
	}
	s.timeline.ReserveRun(device, recs)
	total := time.Since(start)
	us := optrace.ServerUS{Decode: decode, Timing: timing, Total: total}
	for i := range recs {
		s.Layer5.Describe(&recs[i])
		recs[i].ServerUS = us
	}
	return recs, timing
}

// appendTimeResponse appends a TIME answer's JSON: {"op_id": …, "results": [record, …]}.
func appendTimeResponse(b []byte, opID int64, recs []optrace.Record) []byte {
	b = append(b, `{"op_id":`...)
	b = strconv.AppendInt(b, opID, 10)
	b = append(b, `,"results":[`...)
	for i := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = recs[i].AppendJSON(b)
	}
	return append(b, "]}"...)
}

// appendGPUInfo appends INFO's "gpu" object: the gpu model's parameters.
func appendGPUInfo(b []byte, p *perfmodel.Params) []byte {
	g := &p.GPU
	b = append(b, `,"gpu":{"sms":`...)
	b = strconv.AppendUint(b, g.SMs, 10)
	b = append(b, `,"clock_ghz":`...)
	b = optrace.AppendFloat(b, p.ClockGHz)
	b = append(b, `,"hbm_gbps":`...)
	b = optrace.AppendFloat(b, p.BandwidthGBps)
	b = append(b, `,"fp32_flops_per_sm":`...)
	b = strconv.AppendUint(b, g.FP32FLOPsPerSM, 10)
	b = append(b, `,"tensor_flops_per_sm":`...)
	b = strconv.AppendUint(b, g.TensorFLOPsPerSM, 10)
	b = append(b, `,"l2_bytes":`...)
	b = strconv.AppendUint(b, g.L2Bytes, 10)
	b = append(b, `,"kernel_ns":`...)
	b = strconv.AppendUint(b, g.KernelNs, 10)
	for _, set := range []struct {
		key  string
		mask uint64
	}{{`,"tiles":[`, g.Tiles}, {`],"batched_tiles":[`, g.BatchedTiles}} {
		b = append(b, set.key...)
		first := true
		for i, name := range perfmodel.GPUTileCatalogue() {
			if set.mask&(1<<i) != 0 {
				if !first {
					b = append(b, ',')
				}
				first = false
				b = optrace.AppendString(b, name)
			}
		}
	}
	return append(b, "]}"...)
}

// appendInfo appends the INFO answer's JSON (docs/wire.md, "INFO").
func (s *Server) appendInfo(b []byte, opID int64) []byte {
	l5 := &s.Layer5
	b = append(b, `{"op_id":`...)
	b = strconv.AppendInt(b, opID, 10)
	b = append(b, `,"sstemu_version":`...)
	b = optrace.AppendString(b, s.Info.Version)
	b = append(b, `,"protocol_version":`...)
	b = strconv.AppendInt(b, WireVersion, 10)
	b = append(b, `,"sst_protocol_version":`...)
	b = optrace.AppendString(b, strconv.FormatUint(uint64(protocol.Version>>16), 10)+"."+strconv.FormatUint(uint64(protocol.Version&0xffff), 10))
	b = append(b, `,"ops":{"gemm":1,"conv":2,"matmul":3,"time":4,"info":5}`...)
	b = append(b, `,"devices":`...)
	b = strconv.AppendInt(b, int64(s.Info.Devices), 10)
	b = append(b, `,"timing_modes":[`...)
	if s.Info.TimingModes != nil {
		for i, m := range s.Info.TimingModes() {
			if i > 0 {
				b = append(b, ',')
			}
			b = optrace.AppendString(b, m)
		}
	}
	b = append(b, ']')
	b = append(b, `,"layer5":{"kind":`...)
	b = optrace.AppendString(b, l5.Kind)
	b = append(b, `,"path":`...)
	b = optrace.AppendString(b, l5.Path)
	b = append(b, `},"model":`...)
	b = optrace.AppendString(b, l5.Model)
	b = append(b, `,"preset":`...)
	b = optrace.AppendString(b, l5.Preset)
	b = append(b, `,"clock_hz":`...)
	b = optrace.AppendFloat(b, l5.ClockHz)
	b = append(b, `,"peak_flops_per_cycle":`...)
	b = optrace.AppendFloat(b, l5.Ceilings.PeakFLOPsPerCycle)
	b = append(b, `,"bytes_per_cycle":`...)
	b = optrace.AppendFloat(b, l5.Ceilings.BytesPerCycle)
	if p := s.Info.Params; p != nil {
		b = append(b, `,"array":[`...)
		b = strconv.AppendUint(b, p.ArrayRows, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, p.ArrayCols, 10)
		b = append(b, `],"dataflow":`...)
		b = optrace.AppendString(b, p.Dataflow.String())
		b = append(b, `,"tile":[`...)
		for i, v := range [3]uint64{p.TileM, p.TileN, p.TileK} {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, v, 10)
		}
		b = append(b, ']')
	} else {
		b = append(b, `,"array":null,"dataflow":"","tile":null`...)
	}
	k := linalg.Kernels()
	b = append(b, `,"gemm_kernels":{"backend":`...)
	b = optrace.AppendString(b, k.Backend)
	b = append(b, `,"core":`...)
	b = optrace.AppendString(b, k.Core)
	b = append(b, `,"source":`...)
	b = optrace.AppendString(b, k.Source)
	b = append(b, `,"thread_timeout":`...)
	b = strconv.AppendInt(b, int64(k.ThreadTimeout), 10)
	b = append(b, `,"thread_timeout_source":`...)
	b = optrace.AppendString(b, k.ThreadTimeoutSource)
	b = append(b, `,"fallback":`...)
	b = strconv.AppendBool(b, k.Fallback)
	b = append(b, '}')
	if p := s.Info.Params; p != nil && l5.Model == perfmodel.KindGPU {
		b = appendGPUInfo(b, p)
	} else {
		b = append(b, `,"gpu":null`...)
	}
	b = append(b, `,"limits":{"max_op_bytes":`...)
	b = strconv.AppendInt(b, s.maxOpBytes(), 10)
	b = append(b, `,"max_inflight_bytes":`...)
	b = strconv.AppendInt(b, s.memLimit, 10)
	b = append(b, `,"max_json_bytes":`...)
	b = strconv.AppendInt(b, MaxJSONBytes, 10)
	b = append(b, `,"max_time_json_bytes":`...)
	b = strconv.AppendInt(b, MaxTimeJSONBytes, 10)
	b = append(b, `,"max_time_entries":`...)
	b = strconv.AppendInt(b, MaxTimeEntries, 10)
	b = append(b, `,"max_time_gemms":`...)
	b = strconv.AppendUint(b, MaxTimeGEMMs, 10)
	b = append(b, `,"max_time_flops":`...)
	b = strconv.AppendUint(b, MaxTimeFLOPs, 10)
	return append(b, "}}"...)
}

// writeJSONFrame writes u32 BE len(js) | js in one write: the answer to TIME and INFO.
func (c *conn) writeJSONFrame(js []byte) error {
	c.armWriteDeadline(time.Now())
	var hdr [LengthPrefixSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(js)))
	bufs := net.Buffers{hdr[:], js}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// opBatches returns the GEMMs op lowers to, from the plan the decoder made.
func opBatches(op *deviceserver.Op) []linalg.GEMMBatch {
	if op.Plan == nil {
		return nil
	}
	return op.Plan.Batches()
}
