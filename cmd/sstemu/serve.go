package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/tcpfront"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// serveCommand is `sstemu serve`: the whole stack, or layers 1–4 with an external SST, or
// layers 1–2 on a real device file.
func serveCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: tcpfront.DefaultAddr, EnvVars: []string{"SSTEMU_LISTEN"},
			Usage: "TCP `ADDR` of the DeviceGEMM front end (a non-loopback address is logged as a warning)"},
		&cli.StringFlag{Name: "sst-socket", EnvVars: []string{"SSTEMU_SST_SOCKET"},
			Usage: "layer 5 is the SST component listening on this Unix socket `PATH` (a real SST or `sstemu sst`)"},
		&cli.StringFlag{Name: "device", EnvVars: []string{"SSTEMU_DEVICE"},
			Usage: "layers 3–5 are the real device file at `PATH` (e.g. /dev/sst0 inside a QEMU guest)"},
		&cli.IntFlag{Name: "devices", Value: 1, EnvVars: []string{"SSTEMU_DEVICES"},
			Usage: "emulated devices /dev/sst0 … (1–16); ops are spread over them"},
		&cli.StringFlag{Name: "http", EnvVars: []string{"SSTEMU_HTTP"},
			Usage: "serve live statistics on `ADDR`: JSON at /stats, Prometheus text at /metrics"},
		&cli.StringFlag{Name: "clock", Value: "1GHz", EnvVars: []string{"SSTEMU_CLOCK"},
			Usage: "in-process SST component's clock: converts simulated cycles to simulated time"},
		&cli.IntFlag{Name: "max-conns", Value: 1024, EnvVars: []string{"SSTEMU_MAX_CONNS"},
			Usage: "most client connections open at once; more are closed on accept (0: no bound)"},
		&cli.Int64Flag{Name: "max-op-bytes", Value: tcpfront.DefaultMaxOpBytes, EnvVars: []string{"SSTEMU_MAX_OP_BYTES"},
			Usage: "most bytes of one op's tensors plus its result"},
		&cli.Int64Flag{Name: "max-inflight-bytes", Value: tcpfront.DefaultMaxInflightBytes, EnvVars: []string{"SSTEMU_MAX_INFLIGHT_BYTES"},
			Usage: "most memory the ops of all connections hold at once (tensors, results, workspace); more wait"},
		&cli.IntFlag{Name: "max-inflight", Value: deviceserver.DefaultMaxHandles, EnvVars: []string{"SSTEMU_MAX_INFLIGHT"},
			Usage: "most ops timed at once per device (open device handles); more wait"},
		&cli.DurationFlag{Name: "read-timeout", Value: tcpfront.DefaultReadTimeout, EnvVars: []string{"SSTEMU_READ_TIMEOUT"},
			Usage: "a client that stalls this long in the middle of a frame is disconnected"},
		&cli.DurationFlag{Name: "device-timeout", Value: sstdev.DefaultTimeout, EnvVars: []string{"SSTEMU_DEVICE_TIMEOUT"},
			Usage: "how long a timing request may wait for the device (the driver's 5 s); the op is then untimed"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, EnvVars: []string{"SSTEMU_SHUTDOWN_TIMEOUT"},
			Usage: "on SIGINT/SIGTERM, how long ops in flight may take to finish"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, logFlags()...)
	return &cli.Command{
		Name:  "serve",
		Usage: "serve DeviceGEMM clients, timing every op through the five layers",
		Description: "With no flags, all five layers run in-process and the front end listens on 127.0.0.1:9999.\n" +
			"--sst-socket replaces layer 5 by an external SST; --device replaces layers 3–5 by a real device file.\n" +
			"On SIGINT or SIGTERM it stops accepting, finishes the ops in flight, prints the statistics and exits 0.",
		Flags:  flags,
		Action: runServe,
	}
}

// stack is the running layers, top to bottom; the lower ones are nil when replaced by real
// ones.
type stack struct {
	front     *tcpfront.Server        // L1
	server    *deviceserver.Server    // L2
	chardevs  *sstdev.Devices         // L3
	virtio    []*virtiodev.Device     // L4
	component *sstcomponent.Component // L5, in-process
}

func runServe(c *cli.Context) error {
	log, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if c.IsSet("sst-socket") && c.IsSet("device") {
		return errors.New("--sst-socket and --device exclude each other: --device replaces layers 3–5, --sst-socket layer 5")
	}
	if n := c.Int("devices"); n < 1 || n > sstdev.MaxDevices {
		return fmt.Errorf("--devices %d: want 1 … %d", n, sstdev.MaxDevices)
	}
	// Signals are caught from here on, so a SIGTERM during start-up (which may wait for an
	// external SST) still ends in a clean close.
	ctx, stop := withShutdownSignals(c.Context)
	defer stop()

	st, err := buildStack(ctx, c, log)
	if err != nil {
		return err
	}
	// Bind every listener before serving anything, so a failure leaves nothing running.
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		st.close(log)
		return fmt.Errorf("--listen: %w", err)
	}
	var hl net.Listener
	if addr := c.String("http"); addr != "" {
		if hl, err = net.Listen("tcp", addr); err != nil {
			ln.Close()
			st.close(log)
			return fmt.Errorf("--http: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	log.Info().Str("component", "tcpfront").Str("addr", ln.Addr().String()).Msg("listening")
	g.Go(func() error {
		if err := st.front.Serve(ln); !errors.Is(err, tcpfront.ErrServerClosed) {
			return err
		}
		return nil
	})
	var stats *http.Server
	if hl != nil {
		log.Info().Str("component", "http").Str("addr", hl.Addr().String()).Msg("listening")
		stats = &http.Server{Handler: statsHandler(st), ReadHeaderTimeout: 5 * time.Second}
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
		sctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
		defer cancel()
		err := st.front.Shutdown(sctx)
		if stats != nil {
			err = errors.Join(err, stats.Shutdown(sctx))
		}
		return err
	})
	runErr := g.Wait()
	st.close(log)
	if err := st.writeReport(c.App.Writer); err != nil {
		return err
	}
	return runErr
}

// buildStack wires the layers bottom-up: L5, L4, L3, L2, L1.
func buildStack(ctx context.Context, c *cli.Context, log zerolog.Logger) (*stack, error) {
	st := &stack{}
	var openers []deviceserver.Opener
	if path := c.String("device"); path != "" {
		// Layers 3–5 are real: the device server opens the device file as it would in a guest.
		openers = []deviceserver.Opener{deviceserver.FileOpener(path)}
		log.Info().Str("device", path).Msg("layers 3–5: device file")
	} else {
		// Layer 5: the SST component, in-process unless --sst-socket names an external one.
		var dial virtiodev.Dialer
		if path := c.String("sst-socket"); path != "" {
			dial = virtiodev.UnixDialer(path)
			log.Info().Str("sst_socket", path).Msg("layer 5: external SST component")
		} else {
			spec, err := modelSpecFromFlags(c)
			if err != nil {
				return nil, err
			}
			hz, err := sstcomponent.ParseFrequency(c.String("clock"))
			if err != nil {
				return nil, fmt.Errorf("--clock: %w", err)
			}
			st.component, err = sstcomponent.New(sstcomponent.Config{
				ClockHz: hz, Model: spec.Kind, Params: spec.Params,
				Logger: log.With().Str("layer", "sst").Logger(),
			})
			if err != nil {
				return nil, err
			}
			dial = virtiodev.PipeDialer(st.component.ServeConn)
			log.Info().Str("model", spec.Kind).Str("preset", spec.Preset).Msg("layer 5: in-process SST component")
		}

		// Layer 4: one virtio-sst device per /dev/sstN, each with its own link to layer 5.
		n := c.Int("devices")
		for i := range n {
			d, err := virtiodev.New(virtiodev.Config{
				DeviceID: uint32(i), Dialer: dial,
				Logger: log.With().Str("layer", "virtio").Int("device", i).Logger(),
			})
			if err != nil {
				st.close(log)
				return nil, err
			}
			st.virtio = append(st.virtio, d)
		}

		// Layer 3: the driver binds each virtio device and presents /dev/sstN.
		devs, err := sstdev.NewDevices(n, sstdev.Config{
			Timeout: c.Duration("device-timeout"),
			Logger:  log.With().Str("layer", "sstdev").Logger(),
		}, func(i int) (sstdev.Backend, error) { return st.virtio[i], nil })
		if err != nil {
			st.close(log)
			return nil, err
		}
		st.chardevs = devs
		for _, d := range devs.All() {
			openers = append(openers, func() (deviceserver.DeviceFile, error) {
				f, err := d.Open()
				if err != nil {
					return nil, err // a nil interface, not a nil *sstdev.File
				}
				return f, nil
			})
		}
		waitForLinks(ctx, devs, linkWait, log)
	}

	// Layer 2: the device server, timing ops through the device handles.
	st.server = deviceserver.New(deviceserver.Config{
		Devices: openers, MaxHandles: c.Int("max-inflight"),
		Logger: log.With().Str("layer", "deviceserver").Logger(),
	})

	// Layer 1: the DeviceGEMM front end.
	st.front = &tcpfront.Server{
		Addr: c.String("listen"), Executor: st.server,
		MaxOpBytes: c.Int64("max-op-bytes"), MaxInflightBytes: c.Int64("max-inflight-bytes"), MaxConns: c.Int("max-conns"),
		ReadTimeout: c.Duration("read-timeout"),
		Logger:      log.With().Str("layer", "tcpfront").Logger(),
	}
	return st, nil
}

// linkWait bounds how long serve waits at start-up for the devices' links to layer 5; an
// in-process SST is linked in microseconds, an external one may not be running yet.
const linkWait = 2 * time.Second

// waitForLinks waits until every device's link to layer 5 is up, so the first ops are timed
// rather than answered NO_DEVICE; after linkWait it goes on, with a warning: ops are then
// served untimed until the SST component appears.
func waitForLinks(ctx context.Context, devs *sstdev.Devices, limit time.Duration, log zerolog.Logger) {
	deadline := time.Now().Add(limit)
	for {
		down := 0
		for _, st := range devs.Stats() {
			if !st.LinkUp {
				down++
			}
		}
		if down == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log.Warn().Int("devices_down", down).Dur("waited", limit).
				Msg("layer 5 is not reachable yet: ops are served untimed until it is")
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// close releases the layers top-down, once layer 1 has stopped.
func (st *stack) close(log zerolog.Logger) {
	if st.server != nil {
		if err := st.server.Close(); err != nil {
			log.Warn().Err(err).Msg("closing device handles")
		}
	}
	if st.chardevs != nil {
		if err := st.chardevs.Close(); err != nil { // closes the virtio devices bound to them
			log.Warn().Err(err).Msg("closing devices")
		}
	} else {
		for _, d := range st.virtio {
			d.Close()
		}
	}
	if st.component != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := st.component.Shutdown(ctx); err != nil && !errors.Is(err, sstcomponent.ErrClosed) {
			log.Warn().Err(err).Msg("shutting down the SST component")
		}
	}
}

// writeReport prints each layer's statistics, top-down, as SST prints its component's at
// finish.
func (st *stack) writeReport(w io.Writer) error {
	f := st.front.Stats()
	s := st.server.Stats()
	fmt.Fprintf(w, "sstemu: front end: %d ops (GEMM %d, CONV %d, MATMUL %d), %d connections, %d bytes in, %d bytes out\n",
		f.Ops, f.OpsGEMM, f.OpsConv, f.OpsMatmul, f.TotalConns, f.BytesIn, f.BytesOut)
	for _, kind := range tcpfront.AllErrorKinds() {
		if n := f.Errors[kind]; n > 0 {
			fmt.Fprintf(w, "sstemu: front end: %d connections closed for %s\n", n, kind)
		}
	}
	fmt.Fprintf(w, "sstemu: device server: %d ops, %d timed, %d untimed, %d invalid, %d timing requests, %d cycles\n",
		s.Ops, s.Timed, s.Untimed, s.Failed, s.TimingRequest, s.Cycles)
	if st.chardevs != nil {
		for i, d := range st.chardevs.Stats() {
			fmt.Fprintf(w, "sstemu: /dev/sst%d: %d writes, %d answers, %d timeouts, %d late answers\n",
				i, d.Writes, d.Answers, d.Timeouts, d.LateAnswers)
		}
	}
	for i, d := range st.virtio {
		v := d.Stats()
		fmt.Fprintf(w, "sstemu: virtio-sst %d: %d requests, %d responses, %d events, %d errors, %d forwarded, %d no-device\n",
			i, v.Requests, v.Responses, v.Events, v.Errors, v.Forwarded, v.NoDevice)
	}
	if st.component != nil {
		return st.component.WriteReport(w)
	}
	return nil
}
