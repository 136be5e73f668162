package main

import (
	"errors"
	"fmt"
	"net"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// floorCommand is `sstemu floor`, hidden: loadgen's minimal one-layer DeviceGEMM server
// (read a frame, GEMM, answer) in a process of its own, the floor that scripts/bench
// compares `sstemu serve` against, so that both sides of a ratio cross a process boundary.
// It is no server for use (see loadgen.FloorServer).
func floorCommand() *cli.Command {
	return &cli.Command{
		Name:   "floor",
		Usage:  "serve the benchmarks' minimal one-layer DeviceGEMM server (not for use)",
		Hidden: true,
		Description: "Listens on --listen, prints the address it bound on stdout, and serves GEMMs with no\n" +
			"timing, limits, timeouts or logs until SIGINT or SIGTERM: the floor of scripts/bench.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "TCP `ADDR` to listen on"},
		},
		Action: runFloor,
	}
}

func runFloor(c *cli.Context) error {
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if _, err := fmt.Fprintln(c.App.Writer, ln.Addr().String()); err != nil {
		ln.Close()
		return err
	}
	ctx, stop := withShutdownSignals(c.Context)
	defer stop()
	s := loadgen.NewFloorServer()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.Serve(ln); !errors.Is(err, loadgen.ErrFloorClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return s.Close()
	})
	return g.Wait()
}
