package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/sstfuse"
	"github.com/sstemu/sstemu/pkg/stack"
	"github.com/sstemu/sstemu/pkg/tcpfront"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// serveCommand is `sstemu serve`: the whole stack, or layers 1–4 with an external SST, or
// layers 1–2 on a real device file.
func serveCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: tcpfront.DefaultAddr, EnvVars: []string{"SSTEMU_LISTEN"}, Category: catFront,
			Usage: "TCP `ADDR` of the DeviceGEMM front end (a non-loopback address is logged as a warning; \"\" turns it off, with --mount)"},
		&cli.StringFlag{Name: "http", EnvVars: []string{"SSTEMU_HTTP"}, Category: catFront,
			Usage: "serve live statistics on `ADDR`: JSON at /stats, Prometheus text at /metrics"},
		&cli.IntFlag{Name: "max-conns", Value: 1024, EnvVars: []string{"SSTEMU_MAX_CONNS"}, Category: catFront,
			Usage: "most client connections open at once; more are closed on accept (0: no bound)"},
		&cli.GenericFlag{Name: "max-op-bytes", Value: ptr(byteSize(tcpfront.DefaultMaxOpBytes)), EnvVars: []string{"SSTEMU_MAX_OP_BYTES"}, Category: catFront,
			Usage: "most bytes (`SIZE`, e.g. 512MiB) of one op's tensors plus its result"},
		&cli.GenericFlag{Name: "max-inflight-bytes", Value: ptr(byteSize(tcpfront.DefaultMaxInflightBytes)), EnvVars: []string{"SSTEMU_MAX_INFLIGHT_BYTES"}, Category: catFront,
			Usage: "most memory (`SIZE`) the ops of all connections hold at once (tensors, results, workspace); more wait"},
		&cli.IntFlag{Name: "max-device-handles", Aliases: []string{"max-inflight"}, Value: deviceserver.DefaultMaxHandles,
			EnvVars: []string{"SSTEMU_MAX_DEVICE_HANDLES", "SSTEMU_MAX_INFLIGHT"}, Category: catFront,
			Usage: "most ops timed at once per device, as open device handles; more wait (--max-inflight is the old name)"},
		&cli.DurationFlag{Name: "read-timeout", Value: tcpfront.DefaultReadTimeout, EnvVars: []string{"SSTEMU_READ_TIMEOUT"}, Category: catFront,
			Usage: "a client that stalls this long in the middle of a frame is disconnected"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, EnvVars: []string{"SSTEMU_SHUTDOWN_TIMEOUT"}, Category: catFront,
			Usage: "on SIGINT/SIGTERM, how long ops in flight and then the last writes of --trace/--op-log may take (a writer stuck longer is given up on, its records counted as dropped)"},
		&cli.IntFlag{Name: "devices", Value: 1, EnvVars: []string{"SSTEMU_DEVICES"}, Category: catLayers,
			Usage: "how many emulated devices, /dev/sst0 … (1–16), each an in-process layer 3 and 4 with its own link to layer 5; ops are spread over them"},
		&cli.StringFlag{Name: "device", EnvVars: []string{"SSTEMU_DEVICE"}, Category: catLayers,
			Usage: "a real device file at `PATH` replaces layers 3–5 (e.g. /dev/sst0 inside a QEMU guest); excludes --sst-socket, ignores --devices"},
		&cli.StringFlag{Name: "sst-socket", EnvVars: []string{"SSTEMU_SST_SOCKET"}, Category: catLayers,
			Usage: "layer 5 is the SST component listening on this Unix socket `PATH` (a real SST or `sstemu sst`)"},
		&cli.IntFlag{Name: "sst-window", Value: virtiodev.DefaultSSTWindow, EnvVars: []string{"SSTEMU_SST_WINDOW"}, Category: catLayers,
			Usage: "with --sst-socket, most requests each device has sent to the SST unanswered (the real component closes its link at about 40; -1: no bound)"},
		&cli.StringFlag{Name: "mount", EnvVars: []string{"SSTEMU_MOUNT"}, Category: catLayers,
			Usage: "also expose the emulated devices as files `DIR`/sst0 … (DIR must exist) through FUSE, for unmodified /dev/sstN programs (ln -s DIR/sst0 /dev/sst0)"},
		&cli.StringFlag{Name: "timing-request", Value: deviceserver.TimingAuto.String(), EnvVars: []string{"SSTEMU_TIMING_REQUEST"}, Category: catLayers,
			Usage: "how GEMMs are timed: gemm (the tutorial's request; a batch of equal GEMMs as one BATCHED_GEMM, or GEMM × count on a device that answers it INVALID; a TIME frame's shapes as GEMM_LISTs, or one request each), " +
				"compute (one COMPUTE of 2·M·N·K units, latency_model 0, as the reference device server), " +
				"or auto (as gemm, and COMPUTE on a device that answers GEMM INVALID)"},
		&cli.DurationFlag{Name: "device-timeout", Value: sstdev.DefaultTimeout, EnvVars: []string{"SSTEMU_DEVICE_TIMEOUT"}, Category: catLayers,
			Usage: "how long a timing request may wait for the device (the driver's 5 s); the op is then untimed"},
		&cli.StringFlag{Name: "clock", Value: "1GHz", EnvVars: []string{"SSTEMU_CLOCK"}, Category: catLayers,
			Usage: "in-process SST component's clock: converts simulated cycles to simulated time (sim_ns, the trace, INFO's clock_hz)", DefaultText: "the model's clock (--model-clock, the preset's), 1GHz for a model without one"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, opRecordFlags()...)
	flags = append(flags, logFlags()...)
	return &cli.Command{
		Name:  "serve",
		Usage: "serve DeviceGEMM clients, timing every op through the five layers",
		Description: "With no flags, all five layers run in-process and the front end listens on 127.0.0.1:9999.\n" +
			"--sst-socket replaces layer 5 by an external SST; --device replaces layers 3–5 by a real device file;\n" +
			"--mount DIR also serves the emulated devices to other processes as DIR/sst0 … (FUSE).\n" +
			"On SIGINT or SIGTERM it stops accepting, finishes the ops in flight, prints the statistics and exits 0.",
		Flags:  flags,
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	root, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	log := layerLogger(root, cmdLayer)
	if c.IsSet("sst-socket") && c.IsSet("device") {
		return fmt.Errorf("--sst-socket and --device: %w", stack.ErrExclusive)
	}
	if n := c.Int("devices"); n < 1 || n > sstdev.MaxDevices {
		return fmt.Errorf("--devices %d: want 1 … %d", n, sstdev.MaxDevices)
	}
	if w := c.Int("sst-window"); w < -1 {
		return fmt.Errorf("--sst-window %d: want -1 (no bound) or more", w)
	}
	if err := checkRecordFlags(c); err != nil {
		return err
	}
	if c.String("mount") != "" && c.IsSet("device") {
		return errors.New("--mount and --device: --mount serves the emulated devices, --device replaces them by a real one")
	}
	if c.String("listen") == "" && c.String("mount") == "" {
		return errors.New(`--listen "": with the front end off, --mount must serve the devices`)
	}
	// Signals are caught from here on, so a SIGTERM during start-up (which may wait for an
	// external SST) still ends in a clean close.
	ctx, stop := withShutdownSignals(c.Context)
	defer stop()

	opts, err := stackOptions(c, root)
	if err != nil {
		return err
	}
	logKernels(log, linalg.Kernels())
	// The five layers, wired from the bottom up by stack.Build: L5 the SST component (or
	// --sst-socket), L4 the virtio-sst devices, L3 /dev/sst0 … (or --device for L3–L5),
	// L2 the device server, L1 the DeviceGEMM front end, which is served below.
	st, err := stack.Build(ctx, opts)
	if err != nil {
		return err
	}
	front := st.Front()
	rec, err := newOpRecorder(c, front.Info.Devices, front.Layer5.ClockHz)
	if err != nil {
		closeStack(st, log)
		return err
	}
	front.Recorder = rec.Recorder
	// Bind every listener before serving anything, so a failure leaves nothing running.
	var ln, hl net.Listener
	undo := func() {
		if ln != nil {
			ln.Close()
		}
		if hl != nil {
			hl.Close()
		}
		closeStack(st, log)
		sctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
		defer cancel()
		_ = rec.close(sctx)
	}
	if addr := c.String("listen"); addr != "" { // "": no front end, for a layer 2 of one's own
		if ln, err = net.Listen("tcp", addr); err != nil {
			undo()
			return fmt.Errorf("--listen: %w", err)
		}
	}
	if addr := c.String("http"); addr != "" {
		if hl, err = net.Listen("tcp", addr); err != nil {
			undo()
			return fmt.Errorf("--http: %w", err)
		}
	}
	var mnt *sstfuse.Mount
	if dir := c.String("mount"); dir != "" {
		var devs []sstfuse.Device
		for _, d := range st.Devices().All() {
			devs = append(devs, d)
		}
		if mnt, err = sstfuse.New(dir, devs, sstfuse.Options{Logger: layerLogger(root, "sstfuse")}); err != nil {
			undo()
			return fmt.Errorf("--mount: %w", err)
		}
	}

	// The shutdown's deadline, set when the shutdown begins: it bounds the ops in flight and
	// then the trace and op log's last writes (a writer stuck on a FIFO nobody reads must not
	// keep a SIGTERM waiting for ever).
	var deadline time.Time
	g, gctx := errgroup.WithContext(ctx)
	if ln != nil {
		g.Go(func() error {
			if err := st.Front().Serve(ln); !errors.Is(err, tcpfront.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	var stats *http.Server
	if hl != nil {
		log.Info().Str("addr", hl.Addr().String()).Msg("listening") // tcpfront logs its own
		stats = &http.Server{Handler: withOps(statsHandler(st), rec.Ring), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := stats.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		stop()
		log.Info().Msg("shutting down: finishing the ops in flight")
		deadline = time.Now().Add(c.Duration("shutdown-timeout"))
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		var err error
		if mnt != nil {
			err = mnt.Unmount() // no new opens; open files finish with the layers
		}
		err = errors.Join(err, st.Front().Shutdown(sctx))
		if stats != nil {
			err = errors.Join(err, stats.Shutdown(sctx))
		}
		return err
	})
	runErr := g.Wait()
	closeStack(st, log)
	rctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := rec.close(rctx); err != nil {
		log.Warn().Err(err).Msg("finishing the trace and op log")
	}
	if err := st.WriteReport(c.App.Writer); err != nil {
		return err
	}
	rec.writeReport(c.App.Writer)
	return runErr
}

// logKernels logs, at start-up, which GEMM kernels the start-up check settled on.
func logKernels(log zerolog.Logger, k linalg.KernelInfo) {
	ev := log.Info()
	if k.Fallback {
		ev = log.Warn().Str("check_error", k.CheckError)
	}
	ev.Str("gemm_backend", k.Backend).Str("gemm_core", k.Core).Str("gemm_core_source", k.Source).
		Str("gemm_core_requested", k.Requested).Int("gemm_thread_timeout", k.ThreadTimeout).
		Str("gemm_thread_timeout_source", k.ThreadTimeoutSource).Bool("gemm_fallback", k.Fallback).
		Msg("gemm kernels")
}

// closeStack releases the layers once layer 1 has stopped; what fails to close is logged.
func closeStack(st *stack.Stack, log zerolog.Logger) {
	if err := st.Close(); err != nil {
		log.Warn().Err(err).Msg("closing the layers")
	}
}

// stackOptions reads the layers' flags: which layers run in-process and how; the layers
// log to root, each with its layer key.
func stackOptions(c *cli.Context, root zerolog.Logger) (stack.Options, error) {
	opts := stack.Options{
		SSTSocket: c.String("sst-socket"), SSTWindow: c.Int("sst-window"), DeviceFile: c.String("device"),
		Devices: c.Int("devices"), DeviceTimeout: c.Duration("device-timeout"),
		MaxHandles: c.Int("max-device-handles"),
		Addr:       c.String("listen"), MaxOpBytes: byteFlag(c, "max-op-bytes"), MaxInflightBytes: byteFlag(c, "max-inflight-bytes"),
		MaxConns: c.Int("max-conns"), ReadTimeout: c.Duration("read-timeout"),
		Logger: root, Version: version,
	}
	var err error
	if opts.TimingRequest, err = deviceserver.ParseTimingRequest(c.String("timing-request")); err != nil {
		return stack.Options{}, fmt.Errorf("--timing-request: %w", err)
	}
	if opts.SSTSocket == "" && opts.DeviceFile == "" {
		spec, err := modelSpecFromFlags(c)
		if err != nil {
			return stack.Options{}, err
		}
		opts.Model, opts.Params, opts.Preset = spec.Kind, spec.Params, spec.Preset
		if opts.ClockHz, err = componentClock(c, spec); err != nil {
			return stack.Options{}, err
		}
	}
	return opts, nil
}
