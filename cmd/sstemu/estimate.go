package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/optrace"
	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/tcpfront"
)

// estimateCommand is `sstemu estimate`: what-if GEMM timings straight from pkg/perfmodel,
// with no server.
func estimateCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "clock", Value: sstcomponent.FormatFrequency(sstcomponent.DefaultClockHz), EnvVars: []string{"SSTEMU_CLOCK"},
			Usage: "the SST component's clock, as serve's --clock: converts cycles to simulated time", DefaultText: "the model's clock (--model-clock, the preset's), 1GHz for a model without one"},
		&cli.BoolFlag{Name: "json", Usage: "print the timing records (a JSON array, the keys of docs/wire.md) instead of a table"},
	}
	flags = append(flags, modelFlags()...)
	return &cli.Command{
		Name:      "estimate",
		Usage:     "estimate GEMMs' simulated cost with the performance model, no server needed",
		ArgsUsage: "[BATCHx]MxNxK [[BATCHx]MxNxK …]",
		Description: "Prints, for each GEMM shape C[M,N] = A[M,K]·B[K,N], the model's cycles, compute and memory\n" +
			"cycles, memory bytes, bound, utilization and time at --clock: the numbers `sstemu serve` with the\n" +
			"same model flags puts in the op's timing record. A fourth, leading size is a batch count: BxMxNxK is\n" +
			"B GEMMs of MxNxK timed as one batch (torch.bmm; the gpu model runs them as one kernel, the others\n" +
			"answer B × one GEMM). e.g. sstemu estimate 1024x1024x1024 128x11008x4096 64x4096x4096x128",
		Flags:  flags,
		Action: runEstimate,
	}
}

func runEstimate(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("estimate: give at least one shape MxNxK, e.g. 1024x1024x1024")
	}
	spec, err := modelSpecFromFlags(c)
	if err != nil {
		return err
	}
	hz, err := componentClock(c, spec)
	if err != nil {
		return err
	}
	model, err := spec.build()
	if err != nil {
		return err
	}
	l5, err := optrace.InProcess(spec.Kind, spec.Preset, spec.Params, hz)
	if err != nil {
		return err
	}
	recs := make([]optrace.Record, 0, c.NArg())
	shapes := c.Args().Slice()
	for _, s := range shapes {
		batch := uint64(1)
		dims, err := parseDims(s, 3)
		if _, four := parseSizes(s, 4); four == nil {
			if dims, err = parseDims(s, 4); err == nil {
				batch, dims = dims[0], dims[1:]
			}
		}
		if err != nil {
			return fmt.Errorf("estimate: shape %w (or BxMxNxK, a batch count first)", err)
		}
		if te := tcpfront.PlanTimeGEMMs(toInt64(batch), toInt64(dims[0]), toInt64(dims[1]), toInt64(dims[2])); te.Err != "" {
			return fmt.Errorf("estimate: %s: %s (TIME's rule)", s, te.Err)
		}
		e, err := perfmodel.EstimateBatched(model, perfmodel.Op{M: dims[0], N: dims[1], K: dims[2], DtypeSize: float32Bytes}, batch)
		if err != nil {
			return fmt.Errorf("estimate: %s: %w", s, err)
		}
		recs = append(recs, estimateRecord(&l5, e, batch))
	}
	if c.Bool("json") {
		b := []byte{'['}
		for i := range recs {
			if i > 0 {
				b = append(b, ",\n"...)
			}
			b = recs[i].AppendJSON(b)
		}
		_, err := c.App.Writer.Write(append(b, "]\n"...))
		return err
	}
	return writeEstimateTable(c.App.Writer, spec, hz, shapes, recs)
}

// toInt64 is d as the wire's int64, saturated (any size that large exceeds tcpfront.MaxDim).
func toInt64(d uint64) int64 {
	return int64(min(d, math.MaxInt64))
}

// float32Bytes is the element size of every tensor sstemu serves.
const float32Bytes = 4

// estimateRecord is the timing record serve would return for a batch of gemms GEMMs of
// estimate e (a GEMM op when gemms is 1, a batched matmul otherwise).
func estimateRecord(l5 *optrace.Layer5, e perfmodel.Estimate, gemms uint64) optrace.Record {
	op := "gemm"
	if gemms > 1 {
		op = "matmul"
	}
	r := optrace.Record{
		Index: -1, Op: op, Timed: true, Device: -1,
		Cycles: e.Cycles, ComputeCycles: e.ComputeCycles, MemoryCycles: e.MemoryCycles,
		MemoryBytes: e.MemoryBytes, FLOPs: e.FLOPs, GEMMs: gemms,
	}
	l5.Describe(&r)
	return r
}

func writeEstimateTable(w io.Writer, spec modelSpec, hz float64, shapes []string, recs []optrace.Record) error {
	if _, err := fmt.Fprintf(w, "model %s, clock %s\n", spec, sstcomponent.FormatFrequency(hz)); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tcycles\tcompute cycles\tmemory cycles\tmemory bytes\tFLOPs\tbound\tutilization\ttime\t")
	for i := range recs {
		r := &recs[i]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f%%\t%s\t\n", strings.TrimSpace(shapes[i]),
			r.Cycles, r.ComputeCycles, r.MemoryCycles, r.MemoryBytes, r.FLOPs, r.Bound(),
			100*r.Utilization, formatSimTime(r.SimNS()))
	}
	return tw.Flush()
}

// formatSimTime prints simulated nanoseconds with a unit that keeps 3–4 significant digits.
func formatSimTime(ns float64) string {
	switch {
	case ns >= 3600e9:
		return fmt.Sprintf("%.4g h", ns/3600e9)
	case ns >= 60e9:
		return fmt.Sprintf("%.4g min", ns/60e9)
	case ns >= 1e9:
		return fmt.Sprintf("%.4g s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.4g ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.4g µs", ns/1e3)
	}
	return fmt.Sprintf("%.4g ns", ns)
}
