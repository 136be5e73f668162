package sstcomponent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/perfmodel"
)

// DefaultName is the component name used in reports and CSV statistics when Config.Name is
// empty (in SST it is the name the Python configuration gives the component).
const DefaultName = "virtio_device"

// ReferenceComputeCost is the cycles per compute unit the reference component charges for
// every COMPUTE request, whatever its latency_model says: the default (Config.ComputeCosts
// nil), so that `sstemu sst` answers COMPUTE exactly as the component it replaces.
const ReferenceComputeCost = 100

// LatencyModelCosts returns a cost table by latency_model for Config.ComputeCosts: the
// llama example's per-kind costs, scaled so that model 0 stays ReferenceComputeCost (see
// the package documentation). It is an option; the reference ignores latency_model.
func LatencyModelCosts() []uint64 { return []uint64{100, 50, 10, 1} }

// ErrClosed is returned by Serve and ServeConn once Shutdown has been called.
var ErrClosed = errors.New("sstcomponent: component shut down")

// Config configures a Component. The zero value of every field means the reference
// component's default; zero Params mean perfmodel's default preset (the tutorial's
// A100-like roofline).
type Config struct {
	// Name names the component in the report and the CSV statistics (DefaultName).
	Name string
	// DeviceID is the reference's device_id parameter; it appears in the logs.
	DeviceID uint32
	// ClockHz is the component clock, used to convert simulated cycles to simulated time
	// (DefaultClockHz). It does not change the model's cycle counts.
	ClockHz float64
	// Model is the perfmodel kind (one of perfmodel.Kinds(); default roofline)
	// and Params its parameters; CONFIGURE changes the parameters, RESET restores these.
	Model  string
	Params perfmodel.Params
	// ComputeCosts, when set, are the cycles per compute unit by latency_model (e.g.
	// LatencyModelCosts()); a latency_model beyond the table is INVALID. Nil charges
	// ReferenceComputeCost for every latency_model, as the reference component does.
	ComputeCosts []uint64
	// Logger receives connection events at info, per-request lines at debug; the zero
	// Logger discards everything.
	Logger zerolog.Logger
}

// modelState is one immutable configuration of the performance model.
type modelState struct {
	model  perfmodel.Model
	kind   string
	params perfmodel.Params
}

// Component is the SST component: one simulated device, served over any number of
// connections at once. Its methods are safe for concurrent use.
type Component struct {
	name     string
	deviceID uint32
	clockHz  float64
	periodPS uint64
	costs    []uint64
	log      zerolog.Logger

	clock   simClock
	mem     memory
	initial *modelState
	model   atomic.Pointer[modelState]
	modelMu sync.Mutex // serialises CONFIGURE and RESET

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	retired   Stats // statistics of the connections that have ended
	nextConn  uint64

	flushEach bool // flush after every answer (benchmarks compare it with batching)
}

// New validates cfg and builds the component's model.
func New(cfg Config) (*Component, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ClockHz == 0 {
		cfg.ClockHz = DefaultClockHz
	}
	period, err := clockPeriodPS(cfg.ClockHz)
	if err != nil {
		return nil, err
	}
	if cfg.ComputeCosts != nil && len(cfg.ComputeCosts) == 0 {
		return nil, errors.New("sstcomponent: ComputeCosts: an empty table would answer every COMPUTE INVALID (nil means the reference's cost)")
	}
	if cfg.Params == (perfmodel.Params{}) {
		preset, err := perfmodel.LookupPreset(perfmodel.DefaultPreset)
		if err != nil {
			return nil, fmt.Errorf("sstcomponent: default model: %w", err)
		}
		cfg.Params = preset.Params
		if cfg.Model == "" {
			cfg.Model = preset.Model
		}
	}
	if cfg.Model == "" {
		cfg.Model = perfmodel.KindRoofline
	}
	m, err := perfmodel.New(cfg.Model, cfg.Params)
	if err != nil {
		return nil, fmt.Errorf("sstcomponent: model: %w", err)
	}
	c := &Component{
		name:      cfg.Name,
		deviceID:  cfg.DeviceID,
		clockHz:   cfg.ClockHz,
		periodPS:  period,
		costs:     slices.Clone(cfg.ComputeCosts),
		log:       cfg.Logger.With().Str("component_name", cfg.Name).Logger(),
		initial:   &modelState{model: m, kind: cfg.Model, params: cfg.Params},
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	c.model.Store(c.initial)
	c.log.Debug().Uint32("device_id", c.deviceID).Str("clock", FormatFrequency(c.clockHz)).
		Str("model", cfg.Model).Interface("params", cfg.Params).Msg("component initialised")
	return c, nil
}

// Serve accepts connections on l and serves each in its own goroutine until l fails or
// Shutdown is called; it then returns ErrClosed (after Shutdown) or the accept error.
// Shutdown closes l.
func (c *Component) Serve(l net.Listener) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	c.listeners[l] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.listeners, l)
		c.mu.Unlock()
	}()
	c.log.Info().Str("addr", l.Addr().String()).Msg("listening")

	const maxBackoff = time.Second
	var backoff time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if c.shuttingDown() {
				return ErrClosed
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), maxBackoff)
				c.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("sstcomponent: accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		go func() {
			if err := c.ServeConn(context.Background(), rwc); err != nil && !errors.Is(err, ErrClosed) {
				c.log.Warn().Err(err).Msg("connection ended with an error")
			}
		}()
	}
}

// isTemporary reports whether an accept error is worth retrying (too many open files and
// the like), as net/http decides.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (c *Component) shuttingDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// ServeConn serves one stream of requests until it ends, ctx is cancelled or Shutdown is
// called, answering every whole request received before that; it then closes rwc. It
// returns nil when the stream ended cleanly (end of file between requests, cancellation,
// shutdown), a *TruncatedError when it ended in the middle of a request, ErrClosed when
// called after Shutdown, or the I/O error that ended it. If rwc has a
// SetReadDeadline(time.Time) error method (net.Conn does), cancellation and shutdown use it
// to wake a blocked read, so requests already buffered are still answered; otherwise they
// close rwc.
func (c *Component) ServeConn(ctx context.Context, rwc io.ReadWriteCloser) error {
	cn, err := c.track(rwc, nil)
	if err != nil {
		_ = rwc.Close()
		return err
	}
	defer c.untrack(cn)
	stop := context.AfterFunc(ctx, cn.interrupt)
	defer stop()
	return cn.serve()
}

// track registers a new connection, on rwc or for the Direct session direct (rwc nil),
// unless the component is shutting down.
func (c *Component) track(rwc io.ReadWriteCloser, direct *Direct) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, ErrClosed
	}
	c.nextConn++
	cn := newConn(c, rwc, c.nextConn)
	if direct != nil { // set before cn is visible to Shutdown, which may close it
		cn.direct, direct.cn = direct, cn
		direct.log = c.log.With().Uint64("conn", cn.id).Logger()
	}
	cn.stats.Connections = 1
	c.conns[cn] = struct{}{}
	return cn, nil
}

// untrack folds an ended connection's statistics into the component's and releases it.
func (c *Component) untrack(cn *conn) {
	cn.mu.Lock()
	st := cn.stats
	cn.mu.Unlock()
	c.mu.Lock()
	delete(c.conns, cn)
	c.retired.merge(&st)
	c.mu.Unlock()
	close(cn.done)
}

// Shutdown stops the component gracefully: it closes every listener given to Serve (so
// Serve returns ErrClosed and a Listen socket file is removed), lets every connection
// answer the whole requests it has already received, closes them and returns once all
// have ended. If ctx ends first, it closes the remaining connections at once and returns
// ctx's error. Statistics remain readable afterwards.
func (c *Component) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.closing = true
	var errs []error
	for l := range c.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	conns := make([]*conn, 0, len(c.conns))
	for cn := range c.conns {
		conns = append(conns, cn)
	}
	c.mu.Unlock()

	for _, cn := range conns {
		cn.interrupt()
	}
	for i, cn := range conns {
		select {
		case <-cn.done:
		case <-ctx.Done():
			for _, rest := range conns[i:] {
				if rest.rwc != nil {
					_ = rest.rwc.Close()
				}
			}
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the statistics of every connection served so far, open ones
// included, and of the device's clock, model and memory.
func (c *Component) Stats() Stats {
	c.mu.Lock()
	s := c.retired
	for cn := range c.conns {
		cn.mu.Lock()
		s.merge(&cn.stats)
		cn.mu.Unlock()
	}
	c.mu.Unlock()
	s.SimCycles = c.clock.load()
	s.SimTimePS = cyclesToPS(s.SimCycles, c.periodPS)
	s.Model = c.model.Load().kind
	s.MemoryResident = c.mem.resident()
	return s
}

// SimCycles returns the simulated clock, in cycles.
func (c *Component) SimCycles() uint64 { return c.clock.load() }

// Name returns the component's name.
func (c *Component) Name() string { return c.name }
