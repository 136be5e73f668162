package sstcomponent

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strings"

	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// Accumulator is SST's AccumulatorStatistic over unsigned 64-bit values: the count, sum,
// sum of squares, minimum and maximum of every value added. Sum and SumSQ saturate at
// 2^64-1 instead of wrapping as SST's do. Min and Max are 0 while Count is 0.
type Accumulator struct {
	Count uint64 `json:"count"`
	Sum   uint64 `json:"sum"`
	SumSQ uint64 `json:"sum_sq"`
	Min   uint64 `json:"min"`
	Max   uint64 `json:"max"`
}

// Add records one value.
func (a *Accumulator) Add(v uint64) {
	if a.Count == 0 || v < a.Min {
		a.Min = v
	}
	a.Max = max(a.Max, v)
	a.Count++
	a.Sum = satAdd(a.Sum, v)
	a.SumSQ = satAdd(a.SumSQ, satMul(v, v))
}

// Merge adds every value b has recorded to a.
func (a *Accumulator) Merge(b Accumulator) {
	if b.Count == 0 {
		return
	}
	if a.Count == 0 || b.Min < a.Min {
		a.Min = b.Min
	}
	a.Max = max(a.Max, b.Max)
	a.Count = satAdd(a.Count, b.Count)
	a.Sum = satAdd(a.Sum, b.Sum)
	a.SumSQ = satAdd(a.SumSQ, b.SumSQ)
}

// counter is the Accumulator SST keeps for a statistic that adds 1 per event.
func counter(n uint64) Accumulator {
	if n == 0 {
		return Accumulator{}
	}
	return Accumulator{Count: n, Sum: n, SumSQ: n, Min: 1, Max: 1}
}

func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// GEMMStats are the totals of the GEMM and BATCHED_GEMM requests and GEMM_LIST entries
// the model answered (INVALID ones excluded).
type GEMMStats struct {
	// Cycles, ComputeCycles, MemoryCycles, MemoryBytes and FLOPs accumulate the estimate
	// of each request or list entry (a BATCHED_GEMM's is its whole batch's); Cycles.Count
	// is the number of them simulated.
	Cycles        Accumulator `json:"cycles"`
	ComputeCycles Accumulator `json:"compute_cycles"`
	MemoryCycles  Accumulator `json:"memory_cycles"`
	MemoryBytes   Accumulator `json:"memory_bytes"`
	FLOPs         Accumulator `json:"flops"`
	// ComputeBound and MemoryBound count the GEMMs by the resource that limited them.
	ComputeBound uint64 `json:"compute_bound"`
	MemoryBound  uint64 `json:"memory_bound"`
	// Batched accumulates the batch count of each BATCHED_GEMM and of each GEMM_LIST
	// entry of more than one GEMM: its Count is the number of batches, its Sum the GEMMs
	// they carried.
	Batched Accumulator `json:"batched"`
}

func (g *GEMMStats) add(e *perfmodel.Estimate) {
	g.Cycles.Add(e.Cycles)
	g.ComputeCycles.Add(e.ComputeCycles)
	g.MemoryCycles.Add(e.MemoryCycles)
	g.MemoryBytes.Add(e.MemoryBytes)
	g.FLOPs.Add(e.FLOPs)
	if e.Bound == perfmodel.BoundCompute {
		g.ComputeBound++
	} else {
		g.MemoryBound++
	}
}

func (g *GEMMStats) merge(o *GEMMStats) {
	g.Cycles.Merge(o.Cycles)
	g.ComputeCycles.Merge(o.ComputeCycles)
	g.MemoryCycles.Merge(o.MemoryCycles)
	g.MemoryBytes.Merge(o.MemoryBytes)
	g.FLOPs.Merge(o.FLOPs)
	g.ComputeBound += o.ComputeBound
	g.MemoryBound += o.MemoryBound
	g.Batched.Merge(o.Batched)
}

// Stats is a snapshot of the component's statistics, over every connection it has served.
type Stats struct {
	// Total counts every whole request received; Requests counts them by type and Unknown
	// those of an undefined type.
	Total    uint64                           `json:"total"`
	Requests [protocol.NumRequestTypes]uint64 `json:"requests"`
	Unknown  uint64                           `json:"unknown"`
	// Invalid counts the requests answered with status INVALID (Unknown included).
	Invalid uint64 `json:"invalid"`
	// Truncated counts connections that ended in the middle of a request.
	Truncated uint64 `json:"truncated"`
	// Connections counts the connections served, including open ones.
	Connections uint64 `json:"connections"`
	// Compute accumulates the cycles of each COMPUTE answered OK.
	Compute Accumulator `json:"compute"`
	// GEMM holds the model's totals.
	GEMM GEMMStats `json:"gemm"`
	// Read and Write accumulate the bytes of each READ and WRITE answered OK.
	Read  Accumulator `json:"read"`
	Write Accumulator `json:"write"`

	// The fields below describe the device when the snapshot was taken.

	// SimCycles is the simulated clock, in cycles.
	SimCycles uint64 `json:"sim_cycles"`
	// SimTimePS is SimCycles converted to picoseconds at the component's clock.
	SimTimePS uint64 `json:"sim_time_ps"`
	// Model is the name of the performance model (one of perfmodel.Kinds()).
	Model string `json:"model"`
	// MemoryResident is the device memory allocated so far, in bytes.
	MemoryResident uint64 `json:"memory_resident"`
}

// merge adds o's counters to s (the device fields are left alone).
func (s *Stats) merge(o *Stats) {
	s.Total += o.Total
	for i := range s.Requests {
		s.Requests[i] += o.Requests[i]
	}
	s.Unknown += o.Unknown
	s.Invalid += o.Invalid
	s.Truncated += o.Truncated
	s.Connections += o.Connections
	s.Compute.Merge(o.Compute)
	s.GEMM.merge(&o.GEMM)
	s.Read.Merge(o.Read)
	s.Write.Merge(o.Write)
}

// BusyCycles accumulates the cycles of every op that occupied the device (COMPUTE and
// GEMM); its Sum is the simulated clock unless the clock saturated.
func (s *Stats) BusyCycles() Accumulator {
	a := s.Compute
	a.Merge(s.GEMM.Cycles)
	return a
}

// Statistic is one named statistic of the component, as SST's statistics outputs list it.
type Statistic struct {
	Name  string
	Value Accumulator
}

// Statistics lists the component's statistics in a fixed order, each an SST Accumulator:
// counters (requests*, responses_invalid, gemm_*_bound) add 1 per event; the others add
// the quantity of each op.
func (s *Stats) Statistics() []Statistic {
	out := []Statistic{{"requests", counter(s.Total)}}
	for t := range protocol.NumRequestTypes {
		name := "requests_" + strings.ToLower(protocol.RequestType(t).String())
		out = append(out, Statistic{name, counter(s.Requests[t])})
	}
	return append(out,
		Statistic{"requests_unknown", counter(s.Unknown)},
		Statistic{"requests_truncated", counter(s.Truncated)},
		Statistic{"responses_invalid", counter(s.Invalid)},
		Statistic{"busy_cycles", s.BusyCycles()},
		Statistic{"compute_cycles", s.Compute},
		Statistic{"gemm_cycles", s.GEMM.Cycles},
		Statistic{"gemm_compute_cycles", s.GEMM.ComputeCycles},
		Statistic{"gemm_memory_cycles", s.GEMM.MemoryCycles},
		Statistic{"gemm_memory_bytes", s.GEMM.MemoryBytes},
		Statistic{"gemm_flops", s.GEMM.FLOPs},
		Statistic{"gemm_compute_bound", counter(s.GEMM.ComputeBound)},
		Statistic{"gemm_memory_bound", counter(s.GEMM.MemoryBound)},
		Statistic{"gemm_batch", s.GEMM.Batched},
		Statistic{"read_bytes", s.Read},
		Statistic{"write_bytes", s.Write},
	)
}

// CSVColumns are the columns of SST's statOutputCSV for Accumulator statistics over
// uint64 (sst-core src/sst/core/statapi/statoutputcsv.cc with the fields registered by
// stataccumulator.h), in order, with its default options (top header, sim time, rank).
var CSVColumns = []string{
	"ComponentName", "StatisticName", "StatisticSubId", "StatisticType", "SimTime", "Rank",
	"Sum.u64", "SumSQ.u64", "Count.u64", "Min.u64", "Max.u64",
}

// csvSeparator is statOutputCSV's default separator.
const csvSeparator = ", "

// WriteCSV writes the statistics as SST's statOutputCSV does at the end of a simulation:
// a header of CSVColumns, then one line per statistic with the component's name, an empty
// sub-id, type "Accumulator", the simulated time in SST's default 1 ps time base and rank 0.
func (c *Component) WriteCSV(w io.Writer) error {
	s := c.Stats()
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, strings.Join(CSVColumns, csvSeparator))
	for _, st := range s.Statistics() {
		a := st.Value
		fields := []string{c.name, st.Name, "", "Accumulator",
			fmt.Sprint(s.SimTimePS), "0",
			fmt.Sprint(a.Sum), fmt.Sprint(a.SumSQ), fmt.Sprint(a.Count), fmt.Sprint(a.Min), fmt.Sprint(a.Max)}
		fmt.Fprintln(bw, strings.Join(fields, csvSeparator))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sstcomponent: writing CSV statistics: %w", err)
	}
	return nil
}

// WriteReport prints the statistics as the reference component's finish() does through
// SST's Output ("VirtIODevice[…] Statistics:" and one "  X requests: n" line per counter),
// extended with the clock, the model's totals and device memory, and ends with SST's
// "Simulation is complete, simulated time: …" line.
func (c *Component) WriteReport(w io.Writer) error {
	s := c.Stats()
	bw := bufio.NewWriter(w)
	prefix := "VirtIODevice[" + c.name + ":finish] "
	line := func(format string, args ...any) {
		fmt.Fprintf(bw, prefix+format+"\n", args...)
	}
	line("Finish phase")
	line("Statistics:")
	line("  Total requests: %d", s.Total)
	for t := range protocol.NumRequestTypes {
		line("  %s requests: %d", protocol.RequestType(t), s.Requests[t])
	}
	line("  Unknown requests: %d", s.Unknown)
	line("  INVALID responses: %d", s.Invalid)
	line("  Truncated requests: %d", s.Truncated)
	line("  Connections: %d", s.Connections)
	line("  Simulated cycles: %d (%s at %s)", s.SimCycles, formatPS(s.SimTimePS), FormatFrequency(c.clockHz))
	line("  COMPUTE cycles: %d", s.Compute.Sum)
	line("  GEMM model: %s", s.Model)
	line("    GEMMs simulated: %d", satAdd(s.GEMM.Cycles.Count-s.GEMM.Batched.Count, s.GEMM.Batched.Sum))
	line("    Batches of equal GEMMs (BATCHED_GEMM requests, GEMM_LIST entries): %d, carrying %d GEMMs", s.GEMM.Batched.Count, s.GEMM.Batched.Sum)
	line("    FLOPs: %d", s.GEMM.FLOPs.Sum)
	line("    Cycles: %d (compute %d, memory %d)", s.GEMM.Cycles.Sum, s.GEMM.ComputeCycles.Sum, s.GEMM.MemoryCycles.Sum)
	line("    Memory bytes: %d", s.GEMM.MemoryBytes.Sum)
	line("    Compute-bound: %d, memory-bound: %d", s.GEMM.ComputeBound, s.GEMM.MemoryBound)
	line("  Device memory: READ %d bytes, WRITE %d bytes, resident %d bytes", s.Read.Sum, s.Write.Sum, s.MemoryResident)
	fmt.Fprintf(bw, "Simulation is complete, simulated time: %s\n", formatPS(s.SimTimePS))
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sstcomponent: writing report: %w", err)
	}
	return nil
}
