package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Run limits and defaults.
const (
	// MaxConns bounds Config.Conns.
	MaxConns = 4096
	// errorBackoff is the pause after a failed op or redial, so that a server that closes
	// every connection does not turn the generator into a busy loop.
	errorBackoff = 10 * time.Millisecond
	// smallOpMACs and mediumOpMACs split shapes for AutoWarmup.
	smallOpMACs  = 1 << 20
	mediumOpMACs = 1 << 24
)

// Config describes a load: Conns connections, each issuing GEMM ops of one shape back to
// back, for Duration or until Ops ops have been attempted, whichever comes first.
type Config struct {
	Addr     string        // server address, host:port
	M, N, K  int           // C[M,N] = A[M,K]·B[K,N]
	Conns    int           // concurrent connections; 1 if 0
	Duration time.Duration // measured window; 0: until Ops
	Ops      int64         // cap on op attempts over all connections; 0: none (Duration required)
	Warmup   int           // unmeasured ops per connection before the clock starts (see AutoWarmup)
	Timeout  time.Duration // bounds each op (ClientOptions.Timeout); 0: none
	Pieces   bool          // send like the reference client (ClientOptions.Pieces)
	Verify   bool          // check every result against a float64 reference (M·N·K ≤ MaxVerifyMACs)
	Timing   bool          // ask for every op's timing record and read it (ClientOptions.Timing)
	Seed     uint64        // connection i draws A and B from the PCG stream (Seed, i)
}

// ConfigError says which Config field is unusable and why.
type ConfigError struct {
	Field  string
	Reason string
}

// Error formats the field and the reason.
func (e *ConfigError) Error() string { return "loadgen: config " + e.Field + ": " + e.Reason }

func (cfg *Config) clientOptions() ClientOptions {
	return ClientOptions{Pieces: cfg.Pieces, Timeout: cfg.Timeout, Timing: cfg.Timing}
}

// AutoWarmup is a warm-up suited to a shape: 32 ops per connection for small ops, enough
// to leave Linux's initial quick-ACK phase (which would hide the Nagle/delayed-ACK stall of
// Pieces mode), and fewer as ops get expensive.
func AutoWarmup(m, n, k int) int {
	switch macs := float64(m) * float64(n) * float64(k); {
	case macs <= smallOpMACs:
		return 32
	case macs <= mediumOpMACs:
		return 4
	}
	return 1
}

// validate checks cfg and fills in defaults.
func (cfg Config) validate() (Config, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	bad := func(field, format string, args ...any) (Config, error) {
		return cfg, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case cfg.Addr == "":
		return bad("Addr", "empty")
	case cfg.M < 1 || cfg.N < 1 || cfg.K < 1:
		return bad("M, N, K", "must be at least 1, got %d×%d×%d", cfg.M, cfg.N, cfg.K)
	case cfg.Conns < 1 || cfg.Conns > MaxConns:
		return bad("Conns", "%d not in [1, %d]", cfg.Conns, MaxConns)
	case cfg.Duration < 0:
		return bad("Duration", "negative (%s)", cfg.Duration)
	case cfg.Ops < 0:
		return bad("Ops", "negative (%d)", cfg.Ops)
	case cfg.Duration == 0 && cfg.Ops == 0:
		return bad("Duration", "zero with no Ops cap: the run would never end")
	case cfg.Timeout < 0:
		return bad("Timeout", "negative (%s)", cfg.Timeout)
	case cfg.Warmup < 0:
		return bad("Warmup", "negative (%d)", cfg.Warmup)
	case cfg.Verify && float64(cfg.M)*float64(cfg.N)*float64(cfg.K) > MaxVerifyMACs:
		return bad("Verify", "M·N·K = %d×%d×%d exceeds %d multiply-adds for the float64 reference",
			cfg.M, cfg.N, cfg.K, MaxVerifyMACs)
	}
	if d := checkArgs(cfg.M, cfg.N, cfg.K, cfg.M*cfg.K, cfg.K*cfg.N, cfg.M*cfg.N); d != "" {
		return bad("M, N, K", "%s", d)
	}
	return cfg, nil
}

// Run applies the load described by cfg and reports what it measured. Connections are
// dialled and warmed up first; then the clock starts and every connection issues ops back
// to back until Duration has passed (ops in flight then are interrupted and not counted)
// or the Ops budget is spent. A failed op is counted, its connection redialled after a
// short pause, and the run goes on. If ctx ends first, Run interrupts the ops in flight
// and returns the report so far with ctx's error. Setup failures (bad config, dial, a
// failed warm-up op) return an error and an empty report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return Report{Config: cfg}, err
	}
	workers := make([]*worker, cfg.Conns)
	g, gctx := errgroup.WithContext(ctx)
	for i := range workers {
		w := newWorker(&cfg, i)
		workers[i] = w
		g.Go(func() error { return w.setup(gctx) })
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	if err := g.Wait(); err != nil {
		return Report{Config: cfg}, err
	}

	start := time.Now()
	runCtx, end := ctx, time.Time{}
	if cfg.Duration > 0 {
		end = start.Add(cfg.Duration)
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, end)
		defer cancel()
	}
	b := &budget{left: cfg.Ops, capped: cfg.Ops > 0}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(runCtx, end, b) })
	}
	wg.Wait()
	rep := merge(cfg, workers, time.Since(start))
	return rep, ctx.Err()
}

// budget hands out op attempts when Config.Ops caps them.
type budget struct {
	mu     sync.Mutex
	left   int64
	capped bool
}

func (b *budget) take() bool {
	if !b.capped {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left <= 0 {
		return false
	}
	b.left--
	return true
}

// worker is one connection of a run and what it measured.
type worker struct {
	cfg     *Config
	idx     int
	client  *Client
	a, b, c []float32
	ref     *reference

	samples       []time.Duration
	ops, errs     int64
	mismatches    int64
	firstErr      string
	firstErrAt    time.Time
	firstMismatch string
	firstMisAt    time.Time
}

func newWorker(cfg *Config, idx int) *worker {
	r := rand.New(rand.NewPCG(cfg.Seed, uint64(idx)))
	w := &worker{cfg: cfg, idx: idx,
		a: randomMatrix(r, cfg.M*cfg.K), b: randomMatrix(r, cfg.K*cfg.N), c: make([]float32, cfg.M*cfg.N)}
	return w
}

// setup computes the reference, dials and runs the warm-up ops.
func (w *worker) setup(ctx context.Context) error {
	cfg := w.cfg
	if cfg.Verify {
		w.ref = newReference(cfg.M, cfg.N, cfg.K, w.a, w.b)
	}
	var err error
	if w.client, err = Dial(ctx, cfg.Addr, cfg.clientOptions()); err != nil {
		return fmt.Errorf("connection %d: %w", w.idx, err)
	}
	for i := range cfg.Warmup {
		if err := w.client.GEMM(ctx, cfg.M, cfg.N, cfg.K, w.a, w.b, w.c); err != nil {
			return fmt.Errorf("connection %d: warm-up op %d: %w", w.idx, i, err)
		}
		if w.ref != nil {
			if msg := w.ref.check(w.c, cfg.N); msg != "" {
				return fmt.Errorf("connection %d: warm-up op %d: wrong result: %s", w.idx, i, msg)
			}
		}
	}
	return nil
}

func (w *worker) close() {
	if w.client != nil {
		_ = w.client.Close()
		w.client = nil
	}
}

// loop issues ops until ctx ends or the budget is spent.
func (w *worker) loop(ctx context.Context, end time.Time, b *budget) {
	cfg := w.cfg
	// over reports whether a failure is only the run ending: ctx done, or the measured
	// window over (the connection's deadline can fire before ctx's timer). A client's own
	// op timeout is ErrTimeout, not a context error, and counts as a failure.
	over := func(err error) bool {
		return ctx.Err() != nil || !end.IsZero() && !time.Now().Before(end) ||
			errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	for ctx.Err() == nil && b.take() {
		if w.client == nil {
			c, err := Dial(ctx, cfg.Addr, cfg.clientOptions())
			if err != nil {
				if over(err) {
					return
				}
				w.fail(err)
				continue
			}
			w.client = c
		}
		t0 := time.Now()
		err := w.client.GEMM(ctx, cfg.M, cfg.N, cfg.K, w.a, w.b, w.c)
		took := time.Since(t0)
		if err != nil {
			if over(err) {
				return
			}
			w.close()
			w.fail(err)
			continue
		}
		w.ops++
		w.samples = append(w.samples, took)
		if w.ref != nil {
			msg := w.ref.check(w.c, cfg.N)
			if msg == "" && cfg.Timing && !json.Valid(w.client.LastTiming()) {
				msg = fmt.Sprintf("timing record is not JSON: %.200q", w.client.LastTiming())
			}
			if msg != "" {
				w.mismatches++
				if w.firstMismatch == "" {
					w.firstMismatch = fmt.Sprintf("connection %d: %s", w.idx, msg)
					w.firstMisAt = time.Now()
				}
			}
		}
	}
}

// fail counts err and pauses before the next attempt.
func (w *worker) fail(err error) {
	w.errs++
	if w.firstErr == "" {
		w.firstErr = fmt.Sprintf("connection %d: %v", w.idx, err)
		w.firstErrAt = time.Now()
	}
	time.Sleep(errorBackoff)
}

// merge sums the workers' counts and summarises all their samples.
func merge(cfg Config, workers []*worker, elapsed time.Duration) Report {
	rep := Report{Config: cfg, Elapsed: elapsed}
	n := 0
	for _, w := range workers {
		n += len(w.samples)
	}
	all := make([]time.Duration, 0, n)
	var errAt, misAt time.Time
	for _, w := range workers {
		rep.Ops += w.ops
		rep.Errors += w.errs
		rep.Mismatches += w.mismatches
		all = append(all, w.samples...)
		if w.firstErr != "" && (errAt.IsZero() || w.firstErrAt.Before(errAt)) {
			rep.FirstError, errAt = w.firstErr, w.firstErrAt
		}
		if w.firstMismatch != "" && (misAt.IsZero() || w.firstMisAt.Before(misAt)) {
			rep.FirstMismatch, misAt = w.firstMismatch, w.firstMisAt
		}
	}
	rep.Latency = Summarize(all)
	if elapsed > 0 {
		rep.OpsPerSec = float64(rep.Ops) / elapsed.Seconds()
	}
	return rep
}
