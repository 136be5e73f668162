package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/sstcomponent"
)

// verboseLevels maps the SST component's verbose parameter (0–3) onto log levels: 1, the
// reference's default, logs connections; 2 logs every request, as the reference does.
var verboseLevels = []zerolog.Level{zerolog.WarnLevel, zerolog.InfoLevel, zerolog.DebugLevel, zerolog.TraceLevel}

// sstCommand is `sstemu sst`: layer 5 alone, a drop-in for the acalsim.VirtIODevice SST
// component that a real QEMU's virtio-sst device connects to.
func sstCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "socket", Value: sstcomponent.DefaultSocketPath, EnvVars: []string{"SSTEMU_SOCKET"},
			Usage: "Unix socket `PATH` to listen on (the component's socket_path)"},
		&cli.StringFlag{Name: "clock", Value: "1GHz", EnvVars: []string{"SSTEMU_CLOCK"},
			Usage: "component clock (Hz, kHz, MHz, GHz): converts simulated cycles to simulated time"},
		&cli.UintFlag{Name: "device-id", EnvVars: []string{"SSTEMU_DEVICE_ID"},
			Usage: "the component's device_id"},
		&cli.StringFlag{Name: "name", Value: sstcomponent.DefaultName, EnvVars: []string{"SSTEMU_NAME"},
			Usage: "component name in the statistics (the name in the SST Python configuration)"},
		&cli.StringFlag{Name: "stats-csv", EnvVars: []string{"SSTEMU_STATS_CSV"},
			Usage: "at exit, also write the statistics to `PATH` as SST's statOutputCSV does"},
		&cli.IntFlag{Name: "verbose", Value: 1, EnvVars: []string{"SSTEMU_VERBOSE"},
			Usage: "0–3 as the component's verbose parameter: 0 warnings, 1 connections, 2 every request, 3 trace (overrides --log-level)"},
		&cli.StringFlag{Name: "compute-costs", EnvVars: []string{"SSTEMU_COMPUTE_COSTS"},
			Usage: "COMPUTE cycles per unit by latency_model, a comma-separated `LIST` such as 100,50,10,1 (the llama example's table); " +
				"a latency_model beyond it is INVALID",
			DefaultText: "100 for every latency_model, as the reference component"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 10 * time.Second, EnvVars: []string{"SSTEMU_SHUTDOWN_TIMEOUT"},
			Usage: "on SIGINT/SIGTERM, how long connections may take to answer what they have received"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, logFlags()...)
	return &cli.Command{
		Name:  "sst",
		Usage: "run the SST component (layer 5) alone, listening where a QEMU virtio-sst device connects",
		Description: "Serves the raw SSTRequest/SSTResponse stream on a Unix socket like the acalsim.VirtIODevice SST\n" +
			"component, timing GEMMs with the chosen performance model. On SIGINT or SIGTERM it stops accepting,\n" +
			"answers what it has received, prints the statistics as SST's finish() does, removes the socket and\n" +
			"exits 0.",
		Flags:  flags,
		Action: runSST,
	}
}

func runSST(c *cli.Context) error {
	root, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if c.IsSet("verbose") {
		v := c.Int("verbose")
		if v < 0 || v >= len(verboseLevels) {
			return fmt.Errorf("--verbose %d: want 0, 1, 2 or 3", v)
		}
		root = root.Level(verboseLevels[v])
	}
	log := layerLogger(root, cmdLayer)
	spec, err := modelSpecFromFlags(c)
	if err != nil {
		return err
	}
	hz, err := sstcomponent.ParseFrequency(c.String("clock"))
	if err != nil {
		return fmt.Errorf("--clock: %w", err)
	}
	id := c.Uint("device-id")
	if uint64(id) > math.MaxUint32 {
		return fmt.Errorf("--device-id %d: want at most %d", id, uint32(math.MaxUint32))
	}
	costs, err := parseComputeCosts(c.String("compute-costs"))
	if err != nil {
		return fmt.Errorf("--compute-costs: %w", err)
	}
	comp, err := sstcomponent.New(sstcomponent.Config{
		Name: c.String("name"), DeviceID: uint32(id), ClockHz: hz,
		Model: spec.Kind, Params: spec.Params, ComputeCosts: costs, Logger: layerLogger(root, "sstcomponent"),
	})
	if err != nil {
		return err
	}

	var csv *os.File
	if path := c.String("stats-csv"); path != "" {
		if csv, err = os.Create(path); err != nil {
			return fmt.Errorf("--stats-csv: %w", err)
		}
		defer csv.Close()
	}

	l, err := sstcomponent.Listen(c.String("socket"))
	if err != nil {
		return err
	}
	log.Info().Str("socket", c.String("socket")).Uint("device_id", id).Str("clock", sstcomponent.FormatFrequency(hz)).
		Str("model", spec.Kind).Str("preset", spec.Preset).Msg("SST component ready")

	ctx, stop := withShutdownSignals(c.Context)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- comp.Serve(l) }()
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case serveErr = <-served:
	}
	stop()

	sctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	if err := comp.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("connections did not finish in time and were closed")
	}
	if serveErr == nil {
		serveErr = <-served
	}
	if err := comp.WriteReport(c.App.Writer); err != nil {
		return err
	}
	if csv != nil {
		if err := comp.WriteCSV(csv); err != nil {
			return err
		}
		if err := csv.Close(); err != nil {
			return fmt.Errorf("--stats-csv: %w", err)
		}
	}
	if serveErr != nil && !errors.Is(serveErr, sstcomponent.ErrClosed) {
		return serveErr
	}
	return nil
}

// parseComputeCosts reads --compute-costs: empty is nil (the reference's cost for every
// latency_model), otherwise one cycles-per-unit count per latency_model.
func parseComputeCosts(s string) ([]uint64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	fields := strings.Split(s, ",")
	costs := make([]uint64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("latency_model %d: %q is not a cycle count", i, f)
		}
		costs[i] = v
	}
	return costs, nil
}
