package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/optrace"
	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/tcpfront"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// Defaults of Options.
const (
	// DefaultLinkWait bounds how long Build waits for the devices' links to layer 5: an
	// in-process SST is linked in microseconds, an external one may not be running yet.
	DefaultLinkWait = 2 * time.Second
	// componentShutdownWait bounds how long Close lets the in-process SST component finish.
	componentShutdownWait = 5 * time.Second
)

// ErrExclusive is returned by Build when both Options.DeviceFile and Options.SSTSocket
// are set: the device file replaces layers 3–5, the socket only layer 5.
var ErrExclusive = errors.New("stack: DeviceFile and SSTSocket exclude each other: a device file replaces layers 3–5, an SST socket layer 5")

// Options say which layers to build and how. The zero value is the whole stack in-process
// with one device and every layer's defaults.
type Options struct {
	// SSTSocket, when set, is the Unix socket of an external SST component (a real SST or
	// `sstemu sst`) that replaces the in-process layer 5.
	SSTSocket string
	// SSTWindow bounds, with SSTSocket, the requests each device has sent to the external
	// SST and not yet seen answered (virtiodev.DefaultSSTWindow when zero, which the real
	// component survives; negative: no bound). The in-process component needs none.
	SSTWindow int
	// Model, Params and ClockHz configure the in-process SST component (see
	// sstcomponent.Config; zero values are its defaults). Preset only names the preset
	// the parameters came from, for the log.
	Model   string
	Params  perfmodel.Params
	ClockHz float64
	Preset  string

	// Devices is the number of emulated devices /dev/sst0 … (1 … sstdev.MaxDevices; 0
	// means 1), each with its own virtio-sst device and link to layer 5.
	Devices int
	// DeviceTimeout bounds each timing request's wait for its device
	// (sstdev.DefaultTimeout when zero).
	DeviceTimeout time.Duration
	// LinkWait bounds Build's wait for the links to layer 5 (DefaultLinkWait when zero;
	// negative: no wait). When it passes, Build logs a warning and returns: ops are served
	// untimed until layer 5 appears.
	LinkWait time.Duration

	// DeviceFile, when set, is a real device file (e.g. /dev/sst0 inside a QEMU guest)
	// that replaces layers 3–5.
	DeviceFile string

	// TimingRequest is the request layer 2 times GEMMs with (deviceserver.TimingAuto:
	// GEMM, or COMPUTE as the reference device server sends it on a device that refuses
	// GEMM, such as the shipped SST component or the reference QEMU device).
	TimingRequest deviceserver.TimingRequest

	// MaxHandles bounds the device handles, and so the timing requests in flight, per
	// device (deviceserver.DefaultMaxHandles when zero).
	MaxHandles int

	// Addr, MaxOpBytes, MaxInflightBytes, MaxConns and ReadTimeout are the front end's
	// fields of the same names (see tcpfront.Server).
	Addr             string
	MaxOpBytes       int64
	MaxInflightBytes int64
	MaxConns         int
	ReadTimeout      time.Duration

	// Logger is the process logger; each layer logs through it with layer=<package>, and
	// the stack's own lines (which layers run where) with layer=stack.
	// The zero Logger discards everything.
	Logger zerolog.Logger

	// Version is sstemu's version, for the front end's INFO answer.
	Version string
}

// Stack is the running layers, top to bottom; the lower ones are nil when real ones
// replace them. All methods are safe for concurrent use.
type Stack struct {
	log       zerolog.Logger
	front     *tcpfront.Server        // L1
	server    *deviceserver.Server    // L2
	devices   *sstdev.Devices         // L3, nil with a device file
	virtio    []*virtiodev.Device     // L4, empty with a device file
	component *sstcomponent.Component // L5 in-process, nil when external or replaced

	closeOnce sync.Once
	closeErr  error
}

// layerLogger returns the logger of the layer in package pkg.
func layerLogger(log zerolog.Logger, pkg string) zerolog.Logger {
	return log.With().Str("layer", pkg).Logger()
}

// Build wires the layers from layer 5 down to layer 1 and waits until the devices' links
// to layer 5 are up (at most opts.LinkWait, or until ctx ends). On error every layer built
// so far is closed.
func Build(ctx context.Context, opts Options) (*Stack, error) {
	if opts.DeviceFile != "" && opts.SSTSocket != "" {
		return nil, ErrExclusive
	}
	root := opts.Logger
	st := &Stack{log: layerLogger(root, "stack")}
	log := st.log // the stack's own lines
	var openers []deviceserver.Opener
	var l5 optrace.Layer5        // what times the ops, for timing records and INFO
	var params *perfmodel.Params // the in-process model's parameters, for INFO
	if opts.DeviceFile != "" {
		// Layers 3–5 are real: the device server opens the device file as it would in a guest.
		openers = []deviceserver.Opener{deviceserver.FileOpener(opts.DeviceFile)}
		l5 = optrace.Layer5{Kind: optrace.Layer5DeviceFile, Path: opts.DeviceFile}
		log.Info().Str("device_file", opts.DeviceFile).Msg("layers 3–5: device file")
	} else {
		// Layer 5: the SST component, in-process unless SSTSocket names an external one.
		var (
			dial   virtiodev.Dialer
			window int
		)
		if opts.SSTSocket != "" {
			dial = virtiodev.UnixDialer(opts.SSTSocket)
			l5 = optrace.Layer5{Kind: optrace.Layer5SSTSocket, Path: opts.SSTSocket}
			switch {
			case opts.SSTWindow == 0:
				window = virtiodev.DefaultSSTWindow
			case opts.SSTWindow > 0:
				window = opts.SSTWindow
			}
			log.Info().Str("sst_socket", opts.SSTSocket).Int("window", window).Msg("layer 5: external SST component")
		} else {
			comp, err := sstcomponent.New(sstcomponent.Config{
				ClockHz: opts.ClockHz, Model: opts.Model, Params: opts.Params,
				Logger: layerLogger(root, "sstcomponent"),
			})
			if err != nil {
				return nil, err
			}
			st.component = comp
			kind, p := comp.Model()
			preset := opts.Preset
			if preset == "" && opts.Params == (perfmodel.Params{}) {
				preset = perfmodel.DefaultPreset // the component's default parameters
			}
			if l5, err = optrace.InProcess(kind, preset, p, comp.ClockHz()); err != nil {
				st.Close()
				return nil, err
			}
			params = &p
			log.Info().Str("model", opts.Model).Str("preset", opts.Preset).Msg("layer 5: in-process SST component")
		}

		// Layer 4: one virtio-sst device per /dev/sstN, each with its own link to layer 5.
		n := opts.Devices
		if n == 0 {
			n = 1
		}
		if n < 1 || n > sstdev.MaxDevices {
			st.Close()
			return nil, fmt.Errorf("stack: %d devices: want 1 … %d", n, sstdev.MaxDevices)
		}
		for i := range n {
			cfg := virtiodev.Config{
				DeviceID: uint32(i), Dialer: dial, MaxInFlight: window,
				Logger: layerLogger(root, "virtiodev").With().Int("device", i).Logger(),
			}
			if st.component != nil {
				// In-process layer 5 is called directly on the goroutine that notifies the
				// device's queue: no link, no stream, no hand-off (virtiodev.Handler).
				sess, err := st.component.OpenDirect()
				if err != nil {
					st.Close()
					return nil, err
				}
				cfg.Handler = sess
			}
			d, err := virtiodev.New(cfg)
			if err != nil {
				st.Close()
				return nil, err
			}
			st.virtio = append(st.virtio, d)
		}

		// Layer 3: the driver binds each virtio device and presents /dev/sstN.
		devs, err := sstdev.NewDevices(n, sstdev.Config{
			Timeout: opts.DeviceTimeout,
			Logger:  layerLogger(root, "sstdev"),
		}, func(i int) (sstdev.Backend, error) { return st.virtio[i], nil })
		if err != nil {
			st.Close()
			return nil, err
		}
		st.devices = devs
		for _, d := range devs.All() {
			openers = append(openers, func() (deviceserver.DeviceFile, error) {
				f, err := d.Open()
				if err != nil {
					return nil, err // a nil interface, not a nil *sstdev.File
				}
				return f, nil
			})
		}
		st.waitForLinks(ctx, opts.LinkWait)
	}

	// Layer 2: the device server, timing ops through the device handles.
	entryWorkers := 0 // the default depth, for an SST behind a socket
	if st.component != nil {
		entryWorkers = 1 // answered on the writer's goroutine: depth only contends
	}
	st.server = deviceserver.New(deviceserver.Config{
		Devices: openers, MaxHandles: opts.MaxHandles, TimingRequest: opts.TimingRequest,
		EntryWorkers: entryWorkers, Logger: layerLogger(root, "deviceserver"),
	})

	// Layer 1: the DeviceGEMM front end; the caller serves it.
	st.front = &tcpfront.Server{
		Addr: opts.Addr, Executor: st.server,
		MaxOpBytes: opts.MaxOpBytes, MaxInflightBytes: opts.MaxInflightBytes, MaxConns: opts.MaxConns,
		ReadTimeout: opts.ReadTimeout,
		Logger:      layerLogger(root, "tcpfront"),
		Layer5:      l5,
		Info: tcpfront.Info{Version: opts.Version, Devices: len(openers), Params: params,
			TimingModes: st.server.TimingModes},
	}
	return st, nil
}

// waitForLinks waits, at most limit, for every device's LINK_UP; past it, it goes on with
// a warning: ops are then served untimed until the SST component appears.
func (st *Stack) waitForLinks(ctx context.Context, limit time.Duration) {
	if limit < 0 {
		return
	}
	if limit == 0 {
		limit = DefaultLinkWait
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := st.Ready(wctx); err != nil && ctx.Err() == nil {
		down := 0
		for _, s := range st.devices.Stats() {
			if !s.LinkUp {
				down++
			}
		}
		st.log.Warn().Int("devices_down", down).Dur("waited_ms", limit).
			Msg("layer 5 is not reachable yet: ops are served untimed until it is")
	}
}

// Ready waits until every emulated device's link to layer 5 is up, or ctx ends (then
// with an error naming the first device still down). With a device file it returns nil
// at once: the real driver's state is not visible from here.
func (st *Stack) Ready(ctx context.Context) error {
	if st.devices == nil {
		return nil
	}
	return st.devices.WaitLinkUp(ctx)
}

// Front returns layer 1, the DeviceGEMM front end, for the caller to serve.
func (st *Stack) Front() *tcpfront.Server { return st.front }

// Server returns layer 2, the device server.
func (st *Stack) Server() *deviceserver.Server { return st.server }

// Devices returns layer 3, the emulated /dev/sstN, or nil when a device file replaces it.
func (st *Stack) Devices() *sstdev.Devices { return st.devices }

// Virtio returns the layer 4 devices, in /dev/sstN order; none with a device file.
func (st *Stack) Virtio() []*virtiodev.Device { return append([]*virtiodev.Device(nil), st.virtio...) }

// Component returns the in-process layer 5, or nil when it is external or replaced.
func (st *Stack) Component() *sstcomponent.Component { return st.component }

// Close releases the layers top-down: it closes the front end (which should already be
// shut down gracefully), the device handles, the devices and their virtio devices, then
// lets the in-process SST component finish. It returns their errors joined; later calls
// return the first call's result.
func (st *Stack) Close() error {
	st.closeOnce.Do(func() {
		var errs []error
		if st.front != nil {
			errs = append(errs, st.front.Close())
		}
		if st.server != nil {
			errs = append(errs, st.server.Close())
		}
		if st.devices != nil {
			errs = append(errs, st.devices.Close()) // closes the virtio devices bound to them
		} else {
			for _, d := range st.virtio {
				errs = append(errs, d.Close())
			}
		}
		if st.component != nil {
			ctx, cancel := context.WithTimeout(context.Background(), componentShutdownWait)
			defer cancel()
			if err := st.component.Shutdown(ctx); !errors.Is(err, sstcomponent.ErrClosed) {
				errs = append(errs, err)
			}
		}
		st.closeErr = errors.Join(errs...)
	})
	return st.closeErr
}

// Stats is every layer's statistics at one moment, top-down; a layer that is not
// in-process is left out.
type Stats struct {
	Front        tcpfront.Stats      `json:"front"`
	DeviceServer deviceserver.Stats  `json:"device_server"`
	CharDevices  []sstdev.Stats      `json:"char_devices,omitempty"`
	Virtio       []virtiodev.Stats   `json:"virtio,omitempty"`
	SST          *sstcomponent.Stats `json:"sst,omitempty"`
}

// Stats returns a snapshot of every layer's statistics.
func (st *Stack) Stats() Stats {
	s := Stats{Front: st.front.Stats(), DeviceServer: st.server.Stats()}
	if st.devices != nil {
		s.CharDevices = st.devices.Stats()
	}
	for _, d := range st.virtio {
		s.Virtio = append(s.Virtio, d.Stats())
	}
	if st.component != nil {
		c := st.component.Stats()
		s.SST = &c
	}
	return s
}

// WriteReport prints each layer's statistics, top-down, as SST prints its component's at
// finish.
func (st *Stack) WriteReport(w io.Writer) error {
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
	for _, cause := range deviceserver.UntimedCauses() {
		if n := s.UntimedByCause[cause]; n > 0 {
			fmt.Fprintf(w, "sstemu: device server: %d ops untimed for %s\n", n, cause)
		}
	}
	if st.devices != nil {
		for i, d := range st.devices.Stats() {
			fmt.Fprintf(w, "sstemu: %s: %d writes, %d answers, %d timeouts, %d late answers\n",
				sstdev.Path(i), d.Writes, d.Answers, d.Timeouts, d.LateAnswers)
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
