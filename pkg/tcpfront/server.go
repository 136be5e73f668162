package tcpfront

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/optrace"
)

// Server defaults.
const (
	// DefaultAddr is where the reference client connects; loopback only by default.
	DefaultAddr = "127.0.0.1:9999"
	// DefaultReadTimeout bounds a stall in the middle of a frame.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds writing one response to a client that does not read.
	DefaultWriteTimeout = 30 * time.Second

	readBufferSize = 64 << 10 // per connection; a small op fits whole
	// keptOutElems is the largest result whose storage a connection keeps for its next
	// op (as a Decoder keeps its tensors'), 256 KiB: enough that a stream of small ops
	// allocates nothing, small next to what a larger op's arithmetic costs.
	keptOutElems     = 64 << 10
	writeCopyMax     = 1 << 20 // results up to this many bytes go out in one buffer
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	shutdownPollMin  = time.Millisecond
	shutdownPollMax  = 50 * time.Millisecond
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or Close.
var ErrServerClosed = errors.New("tcpfront: server closed")

// ErrNoExecutor is returned by Serve when Server.Executor is nil.
var ErrNoExecutor = errors.New("tcpfront: Server.Executor is nil")

// Server serves the DeviceGEMM protocol: one goroutine per connection, one op at a time
// per connection, any number of ops per connection. The zero value of every field but
// Executor is usable. Fields must not change once serving has started.
type Server struct {
	// Addr is the TCP address of ListenAndServe; DefaultAddr if empty. A non-loopback
	// address is allowed but logged as a warning.
	Addr string
	// Executor runs each op. It must not keep the op's tensors after Execute returns: the
	// connection reuses their storage for the next op.
	Executor deviceserver.Executor
	// Logger receives one line per connection closed for a bad request, plus debug lines.
	// The zero Logger discards everything.
	Logger zerolog.Logger
	// MaxOpBytes bounds the bytes of an op's inputs plus output; DefaultMaxOpBytes if ≤ 0.
	MaxOpBytes int64
	// MaxInflightBytes bounds the memory (inputs, output and workspace, as MaxOpBytes
	// counts them) of the ops of all connections together; DefaultMaxInflightBytes if ≤ 0.
	// An op that does not fit waits, before its tensors are read, until others finish; one
	// larger than the whole bound is refused.
	MaxInflightBytes int64
	// MaxConns bounds open connections; a connection beyond it is closed at once. 0 means
	// no bound.
	MaxConns int
	// ReadTimeout bounds how long a client may stall in the middle of a frame (each read
	// must make progress within it); DefaultReadTimeout if 0, none if negative.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response, to between ¾ of it and all of it (the
	// deadline is moved once a quarter of it has passed); DefaultWriteTimeout if 0, none
	// if negative.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that starts no frame for this long; 0 means never
	// (the reference client keeps one connection for its whole life).
	IdleTimeout time.Duration
	// DisableQuickAck turns off TCP_QUICKACK re-arming, for measurement only: with it, a
	// client that writes a frame in pieces with Nagle on waits ≈ 40 ms per op.
	DisableQuickAck bool
	// DisableStreaming turns off computing a large GEMM while its B is still arriving
	// (when the Executor is a deviceserver.GEMMStreamer), for measurement only.
	DisableStreaming bool
	// Recorder, if set, receives every op's timing record (one per TIME entry) and the
	// frame's wall-clock spans: the trace, the op log, the ring behind /ops.
	Recorder *optrace.Recorder
	// Timeline places every timed op on its device's simulated timeline (start_cycle and
	// end_cycle of the records); if nil, one of Info.Devices devices (at least 1) is made.
	Timeline *optrace.Timeline
	// Layer5 describes what times the ops, for the records and INFO.
	Layer5 optrace.Layer5
	// Info is what INFO reports beside the limits.
	Info Info

	initOnce   sync.Once
	baseCtx    context.Context
	cancel     context.CancelFunc
	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	inShutdown atomic.Bool
	hardClosed atomic.Bool
	nextConnID atomic.Uint64
	counters   counters
	memory     *semaphore.Weighted // MaxInflightBytes, shared by all connections
	memLimit   int64
	timeline   *optrace.Timeline
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
		s.memLimit = s.MaxInflightBytes
		if s.memLimit <= 0 {
			s.memLimit = DefaultMaxInflightBytes
		}
		s.memory = semaphore.NewWeighted(s.memLimit)
		s.timeline = s.Timeline
		if s.timeline == nil {
			s.timeline = optrace.NewTimeline(max(s.Info.Devices, 1))
		}
	})
}

func (s *Server) maxOpBytes() int64 {
	if s.MaxOpBytes <= 0 {
		return DefaultMaxOpBytes
	}
	return s.MaxOpBytes
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := s.counters.snapshot()
	st.Records = s.Recorder.Stats()
	return st
}

// ListenAndServe listens on s.Addr (DefaultAddr if empty) and calls Serve.
func (s *Server) ListenAndServe() error {
	if s.inShutdown.Load() {
		return ErrServerClosed
	}
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve accepts connections on l and serves each in its own goroutine until Shutdown or
// Close, then returns ErrServerClosed; it closes l. Any other error from Accept that is
// not temporary is returned as is.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	defer l.Close()
	if s.Executor == nil {
		return ErrNoExecutor
	}
	if !s.trackListener(l, true) {
		return ErrServerClosed
	}
	defer s.trackListener(l, false)
	s.warnIfExposed(l.Addr())
	s.Logger.Info().Str("addr", l.Addr().String()).Msg("listening")

	backoff := time.Duration(0)
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
				s.Logger.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.counters.totalConns.Add(1)
		c := s.newConn(nc)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

// isTemporary reports whether err is one of the resource errors Accept recovers from (too
// many open files, …).
func isTemporary(err error) bool {
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) trackListener(l net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

// warnIfExposed logs a warning if addr is not a loopback address.
func (s *Server) warnIfExposed(addr net.Addr) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() {
		return
	}
	s.Logger.Warn().Str("addr", addr.String()).
		Msg("listening on a non-loopback address: any host that can reach it can submit ops")
}

// newConn registers nc, or closes it and returns nil if the server is shutting down or
// MaxConns are open.
func (s *Server) newConn(nc net.Conn) *conn {
	id := s.nextConnID.Add(1)
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		_ = nc.Close()
		return nil
	}
	if s.MaxConns > 0 && len(s.conns) >= s.MaxConns {
		s.mu.Unlock()
		s.counters.errors[KindConnLimit].Add(1)
		s.Logger.Warn().Uint64("conn", id).Str("remote", nc.RemoteAddr().String()).
			Str("kind", KindConnLimit.String()).Int("max_conns", s.MaxConns).
			Msg("refusing connection: too many open")
		_ = nc.Close()
		return nil
	}
	c := newConn(s, nc, id)
	s.conns[c] = struct{}{}
	s.counters.activeConns.Add(1)
	s.mu.Unlock()
	return c
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.counters.activeConns.Add(-1)
}

// Shutdown stops accepting, closes idle connections, lets every op in flight finish and
// its response be written, closes those connections too, and returns once none is left
// or ctx is done (then with ctx's error; Close may follow). Serve returns ErrServerClosed
// at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.inShutdown.Store(true)
	err := s.closeListeners()
	wait := shutdownPollMin
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if s.closeIdleConns() {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			wait = min(2*wait, shutdownPollMax)
			timer.Reset(wait)
		}
	}
}

// Close closes the listeners and every connection at once, cancelling ops in flight
// through their context. Serve then returns ErrServerClosed.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	s.hardClosed.Store(true)
	s.cancel()
	err := s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	return err
}

func (s *Server) closeListeners() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for l := range s.listeners {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// closeIdleConns closes every connection waiting for a frame and reports whether no
// connection is left at all.
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.closeIfIdle()
	}
	return len(s.conns) == 0
}
