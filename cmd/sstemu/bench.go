package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// benchCommand measures a DeviceGEMM server: latency percentiles and ops/s.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a DeviceGEMM server (p50/p99 latency, ops/s) with the reference client's framing",
		Description: "Opens --conns connections to --addr, each issuing GEMM ops of --shape back to back for\n" +
			"--duration, and prints the latency percentiles and throughput. --pieces sends every op as\n" +
			"the reference PyTorch client does (five writes, Nagle on); --verify checks every result\n" +
			"against a float64 reference; --floor benches an in-process minimal server instead of\n" +
			"--addr, for ratios (in this process: the floor then does not pay for crossing a process\n" +
			"boundary, which the server under test does; see pkg/loadgen's benchmarks for a floor in a\n" +
			"child process). SIGINT or SIGTERM ends the run early and prints what was measured. Exits\n" +
			"non-zero if any op failed or any result was wrong.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:9999", EnvVars: []string{"SSTEMU_BENCH_ADDR"},
				Usage: "server to measure, host:port"},
			&cli.StringFlag{Name: "shape", Value: "4x16x8", EnvVars: []string{"SSTEMU_BENCH_SHAPE"},
				Usage: "GEMM shape MxNxK: C[M,N] = A[M,K]·B[K,N]"},
			&cli.IntFlag{Name: "conns", Value: 1, EnvVars: []string{"SSTEMU_BENCH_CONNS"},
				Usage: "concurrent connections"},
			&cli.DurationFlag{Name: "duration", Value: 5e9, EnvVars: []string{"SSTEMU_BENCH_DURATION"},
				Usage: "measured window (after the warm-up)"},
			&cli.Int64Flag{Name: "ops", EnvVars: []string{"SSTEMU_BENCH_OPS"},
				Usage: "stop after this many ops over all connections (0: no cap)"},
			&cli.IntFlag{Name: "warmup", Value: -1, EnvVars: []string{"SSTEMU_BENCH_WARMUP"},
				Usage: "unmeasured ops per connection first (-1: 32 for small shapes, fewer for large)"},
			&cli.DurationFlag{Name: "op-timeout", Value: 30e9, EnvVars: []string{"SSTEMU_BENCH_OP_TIMEOUT"},
				Usage: "an op unanswered this long counts as an error (0: wait forever)"},
			&cli.BoolFlag{Name: "pieces", EnvVars: []string{"SSTEMU_BENCH_PIECES"},
				Usage: "send each op in five writes with Nagle on, as the reference client"},
			&cli.BoolFlag{Name: "timing", EnvVars: []string{"SSTEMU_BENCH_TIMING"},
				Usage: "ask for every op's timing record (\"timing\": true) and read the trailer, to measure its cost"},
			&cli.BoolFlag{Name: "verify", EnvVars: []string{"SSTEMU_BENCH_VERIFY"},
				Usage: "check every result against a float64 reference (small shapes)"},
			&cli.BoolFlag{Name: "floor", EnvVars: []string{"SSTEMU_BENCH_FLOOR"},
				Usage: "bench an in-process minimal server (the floor) on a free loopback port instead of --addr"},
			&cli.Uint64Flag{Name: "seed", Value: 1, EnvVars: []string{"SSTEMU_BENCH_SEED"},
				Usage: "seed of the random A and B (connection i uses stream (seed, i))"},
		}, logFlags()...),
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	root, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	log := layerLogger(root, cmdLayer)
	m, n, k, err := loadgen.ParseShape(c.String("shape"))
	if err != nil {
		return err
	}
	cfg := loadgen.Config{
		Addr: c.String("addr"), M: m, N: n, K: k,
		Conns: c.Int("conns"), Duration: c.Duration("duration"), Ops: c.Int64("ops"),
		Warmup: c.Int("warmup"), Timeout: c.Duration("op-timeout"), Pieces: c.Bool("pieces"), Verify: c.Bool("verify"),
		Timing: c.Bool("timing"),
		Seed:   c.Uint64("seed"),
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = loadgen.AutoWarmup(m, n, k)
	}
	if c.Bool("floor") {
		if cfg.Timing {
			return errors.New("--floor and --timing exclude each other: the floor server sends no timing records")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("--floor: %w", err)
		}
		floor := loadgen.NewFloorServer()
		done := make(chan error, 1)
		go func() { done <- floor.Serve(l) }()
		defer func() {
			_ = floor.Close()
			if err := <-done; !errors.Is(err, loadgen.ErrFloorClosed) {
				log.Warn().Err(err).Msg("floor server stopped")
			}
		}()
		cfg.Addr = l.Addr().String()
		log.Debug().Str("addr", cfg.Addr).Msg("floor server listening")
	}
	log.Debug().Str("addr", cfg.Addr).Ints("shape", []int{m, n, k}).Int("conns", cfg.Conns).
		Dur("duration", cfg.Duration).Int("warmup", cfg.Warmup).Bool("pieces", cfg.Pieces).Msg("bench starting")
	ctx, stop := withShutdownSignals(c.Context)
	defer stop()
	rep, err := loadgen.Run(ctx, cfg)
	switch {
	case err != nil && ctx.Err() != nil && c.Context.Err() == nil:
		if _, werr := rep.WriteTo(c.App.Writer); werr != nil {
			return werr
		}
		return errors.New("bench: interrupted")
	case err != nil:
		return err
	}
	if _, err := rep.WriteTo(c.App.Writer); err != nil {
		return err
	}
	switch {
	case rep.Errors > 0 || rep.Mismatches > 0:
		return fmt.Errorf("bench: %d ops failed and %d results were wrong", rep.Errors, rep.Mismatches)
	case rep.Ops == 0:
		return errors.New("bench: no op completed in the measured window")
	}
	return nil
}
