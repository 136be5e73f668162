package deviceserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// DeviceFile is a handle on the accelerator's character device, used exactly as the guest's
// device server uses /dev/sst0: write a 4104-byte SSTRequest, which blocks until the device
// has answered, then read the 4112-byte SSTResponse. *os.File implements it, and so does the
// emulated device's handle, so the same code runs in-process and inside a guest.
type DeviceFile interface {
	io.Reader
	io.Writer
	io.Closer
}

// Opener opens a new handle on one device. Each handle stores at most one response, so
// every concurrent caller needs a handle of its own; the server keeps a pool per device.
type Opener func() (DeviceFile, error)

// FileOpener opens the device file at path (for instance a real /dev/sst0 inside a guest).
func FileOpener(path string) Opener {
	return func() (DeviceFile, error) {
		return os.OpenFile(path, os.O_RDWR, 0)
	}
}

// DefaultMaxHandles bounds the open handles per device, and so the GEMM timing requests a
// server has in flight on one device.
const DefaultMaxHandles = 64

// Config configures a Server.
type Config struct {
	// Devices are the devices ops are timed on, spread round-robin. None: every op is
	// computed and reported untimed.
	Devices []Opener
	// MaxHandles bounds the open handles per device (default DefaultMaxHandles).
	MaxHandles int
	// TimingRequest is the request GEMMs are timed with (TimingAuto: GEMM, falling back
	// per device to COMPUTE as the reference device server sends it).
	TimingRequest TimingRequest
	// EntryWorkers bounds the timing requests of one TIME frame in flight at once
	// (default DefaultEntryWorkers). A device whose layer 5 answers in the notifying
	// goroutine (in-process) is best served by 1: it gains nothing from depth, and
	// concurrent writers only contend for its one queue (docs/performance.md, target 6).
	EntryWorkers int
	// Logger receives one debug line per op with its cycles, and warnings for untimed ops.
	Logger zerolog.Logger
}

// Server is layer 2: it computes every op on the host and times it on the device. It
// implements Executor and is safe for concurrent use.
type Server struct {
	log          zerolog.Logger
	timing       TimingRequest
	entryWorkers int // Config.EntryWorkers or its default
	devices      []*handlePool
	next         atomic.Uint64 // round-robin cursor over devices
	tag          atomic.Uint64 // user_data of the next timing request, to match its response
	// lastUntimed is the cause of the latest untimed op while the device is failing,
	// UntimedNone while ops are timed: warnings are logged once per change of cause.
	lastUntimed atomic.Uint32
	stats       counters
	fallbacks   atomic.Uint64 // devices switched to COMPUTE (TimingAuto)
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	handles := cfg.MaxHandles
	if handles <= 0 {
		handles = DefaultMaxHandles
	}
	s := &Server{log: cfg.Logger, timing: cfg.TimingRequest, entryWorkers: cfg.EntryWorkers}
	if s.entryWorkers <= 0 {
		s.entryWorkers = DefaultEntryWorkers
	}
	if s.timing >= numTimingRequests {
		s.timing = TimingAuto
	}
	for i, open := range cfg.Devices {
		p := newHandlePool(open, handles)
		p.index = i
		s.devices = append(s.devices, p)
	}
	return s
}

// Close closes every pooled device handle. Ops still running finish with their handles
// closed behind them.
func (s *Server) Close() error {
	var errs []error
	for _, d := range s.devices {
		errs = append(errs, d.close())
	}
	return errors.Join(errs...)
}

// Execute computes op and times it on the next device. Invalid ops are errors; a device
// that cannot time the op is not: the result comes back with Timing.Timed false.
func (s *Server) Execute(ctx context.Context, op *Op) (*Result, error) {
	start := time.Now()
	res, plan, err := compute(op)
	if err != nil {
		s.stats.failed.Add(1)
		return nil, err
	}
	// time.Since reads the monotonic clock alone, half of what time.Now costs.
	res.ComputeTime = time.Since(start)
	res.Timing, res.Device = s.timeBatches(ctx, plan.Batches())
	res.TimingTime = time.Since(start) - res.ComputeTime
	s.done(op, res)
	return res, nil
}

// done counts a finished op and logs it.
func (s *Server) done(op *Op, res *Result) {
	s.stats.record(op.Type, res.Timing)
	ev := s.log.Debug()
	if cause := res.Timing.Untimed; !res.Timing.Timed {
		// Warn when the cause changes (the SST went away, timed out, came back with another
		// fault), not once per op: an outage under load is tens of thousands of ops. A
		// shutdown is no fault: its untimed ops stay at debug level.
		if last := UntimedCause(s.lastUntimed.Swap(uint32(cause))); last != cause && cause != UntimedClosed && cause != UntimedCanceled {
			ev = s.log.Warn()
		}
		ev = ev.Stringer("untimed", cause).AnErr("error", res.Timing.UntimedErr)
	} else {
		s.lastUntimed.Store(uint32(UntimedNone))
	}
	ev.Int64("op_id", op.ID).Str("op", op.Type.Name()).Ints("shape", res.Shape).
		Int("gemm_requests", res.Timing.Requests).Uint64("cycles", res.Timing.Cycles).
		Uint64("compute_cycles", res.Timing.ComputeCycles).Uint64("memory_cycles", res.Timing.MemoryCycles).
		Uint64("memory_bytes", res.Timing.MemoryBytes).Msg("op")
}

// compute runs op on the host, from its Plan (planned here if the caller did not), and
// returns its result and the plan, which says what GEMMs the op lowered to.
func compute(op *Op) (*Result, *linalg.Plan, error) {
	x, y, kind, ok := operands(op)
	if !ok {
		return nil, nil, fmt.Errorf("deviceserver: op %d: type %s without its %s operands", op.ID, op.Type, op.Type)
	}
	plan := op.Plan
	if plan == nil {
		p, err := planOp(op)
		if err != nil {
			return nil, nil, err
		}
		plan = &p
	} else if plan.Kind() != kind {
		return nil, nil, fmt.Errorf("deviceserver: op %d: type %s with a %s plan", op.ID, op.Type, plan.Kind())
	}
	out, err := plan.ComputeInto(x, y, op.Out)
	if err != nil {
		return nil, nil, err
	}
	return newResult(plan, out), plan, nil
}

// operands returns op's two tensors and the plan kind its type needs, and false if the
// operands matching its type are missing.
func operands(op *Op) (x, y []float32, kind linalg.Kind, ok bool) {
	switch {
	case op.Type == OpGEMM && op.GEMM != nil:
		return op.GEMM.A, op.GEMM.B, linalg.KindGEMM, true
	case op.Type == OpMatmul && op.Matmul != nil:
		return op.Matmul.A, op.Matmul.B, linalg.KindMatmul, true
	case op.Type == OpConv && op.Conv != nil:
		return op.Conv.Input, op.Conv.Weight, linalg.KindConv2D, true
	default:
		return nil, nil, 0, false
	}
}

// planOp plans an op from its shape fields (operands has checked they are present).
func planOp(op *Op) (linalg.Plan, error) {
	switch op.Type {
	case OpGEMM:
		g := op.GEMM
		return linalg.PlanGEMM(linalg.GEMMShape{M: g.M, N: g.N, K: g.K})
	case OpMatmul:
		return linalg.PlanMatmul(op.Matmul.AShape, op.Matmul.BShape)
	default:
		c := op.Conv
		return linalg.PlanConv2D(linalg.ConvParams{
			InputShape: c.InputShape, WeightShape: c.WeightShape,
			Stride: c.Stride, Padding: c.Padding, Dilation: c.Dilation, Groups: c.Groups,
		})
	}
}

// Time asks the next device for the timing of gemms alone, with no numerics: one GEMM
// request per run of equal consecutive shapes, scaled by the run's length.
func (s *Server) Time(ctx context.Context, gemms []linalg.GEMMShape) Timing {
	t, _ := s.timeBatches(ctx, coalesce(gemms))
	return t
}

// timeBatches sends one timing request per batch to the next device and sums the
// answers, each scaled by its batch's count; it returns the device's index too (-1: none).
// Under TimingAuto, a device that refuses a GEMM is switched to COMPUTE and the op is
// timed again from its first batch, so that one op is always timed with one kind of
// request (see timeOn).
func (s *Server) timeBatches(ctx context.Context, batches []linalg.GEMMBatch) (Timing, int) {
	if len(s.devices) == 0 {
		return Timing{Untimed: UntimedNoDevice, UntimedErr: errNoDevice}, -1
	}
	device := int((s.next.Add(1) - 1) % uint64(len(s.devices)))
	return s.timeOn(ctx, s.devices[device], batches), device
}

// timeOn times batches on the device behind pool.
func (s *Server) timeOn(ctx context.Context, pool *handlePool, batches []linalg.GEMMBatch) Timing {
	h, cause, err := pool.get(ctx)
	if err != nil {
		return Timing{Untimed: cause, UntimedErr: err}
	}
	s.checkLink(pool, h)
	var t Timing
	kind := s.kindFor(pool)
	opKind := kind
	fellBack := false // a GEMM was refused: an answer
	for i := 0; i < len(batches); i++ {
		b := batches[i]
		r, sent, scale, cause, err := s.timeBatch(h, pool, b, kind)
		t.Requests += sent
		if kind == protocol.ReqCompute {
			t.ComputeRequests += sent
		}
		if cause == UntimedRefused && s.timing == TimingAuto && kind == protocol.ReqGEMM {
			s.fallBack(pool, err)
			kind, opKind, fellBack = protocol.ReqCompute, protocol.ReqCompute, true
			t = Timing{Requests: t.Requests, ComputeRequests: t.ComputeRequests}
			i = -1 // the whole op again, with COMPUTE
			continue
		}
		if err != nil {
			if h, cause = s.afterFailure(pool, h, cause); h != nil {
				pool.put(h)
			}
			// Kind names the request that was answered; a device that never got to
			// answer (link down, timeout, gone) leaves it zero, the record's "".
			k := protocol.RequestType(0)
			if i > 0 || fellBack || cause == UntimedDeviceError {
				k = opKind
			}
			return Timing{Requests: t.Requests, ComputeRequests: t.ComputeRequests, Kind: k, Untimed: cause, UntimedErr: err}
		}
		if scale == 1 && b.Count > 1 {
			opKind = protocol.ReqBatchedGEMM
		}
		if !t.add(r, scale) {
			pool.put(h)
			return Timing{Requests: t.Requests, ComputeRequests: t.ComputeRequests, Kind: opKind, Untimed: UntimedOverflow, UntimedErr: errOverflow}
		}
	}
	pool.put(h)
	t.Timed = true
	t.Kind = opKind
	return t
}

// afterFailure keeps h after a request that failed with cause if the handle is as good
// as before (nothing was sent, or the device refused it) and returns it, or discards it
// and returns nil; a link found down makes the device's timing choices start again. It
// also returns the cause to report: a refusal no fallback took up is UntimedDeviceError,
// the stable name of a status other than OK.
func (s *Server) afterFailure(pool *handlePool, h *handle, cause UntimedCause) (*handle, UntimedCause) {
	if cause == UntimedLinkDown {
		pool.mode.reset() // another SST may answer when the link is back
	}
	switch cause {
	case UntimedRefused:
		return h, UntimedDeviceError
	case UntimedInvalidShape, UntimedOverflow:
		return h, cause
	default:
		pool.discard(h)
		return nil, cause
	}
}

// timeBatch times one batch on h with kind (ReqGEMM or ReqCompute): a batch of more than
// one GEMM as one BATCHED_GEMM while the device takes them, else one request for its
// shape. It returns the answer, the requests the device answered (2 when a BATCHED_GEMM
// was refused and the GEMM sent after it), the count to scale the answer by (1 for a
// BATCHED_GEMM, whose answer is the batch's) and, on failure, the cause and detail as
// timeOne does.
func (s *Server) timeBatch(h *handle, pool *handlePool, b linalg.GEMMBatch, kind protocol.RequestType) (protocol.GEMMResult, int, uint64, UntimedCause, error) {
	count := uint64(b.Count)
	sent := 0
	if kind == protocol.ReqGEMM && count > 1 && !pool.mode.noBatched.Load() {
		r, answered, cause, err := s.timeOne(h, b.Shape, protocol.ReqBatchedGEMM, count)
		if answered {
			sent++
		}
		if cause != UntimedRefused {
			return r, sent, 1, cause, err
		}
		// The device does not know BATCHED_GEMM: this batch and the later ones go as
		// GEMM × count.
		s.noBatched(pool, err)
	}
	r, answered, cause, err := s.timeOne(h, b.Shape, kind, 1)
	if answered {
		sent++
	}
	return r, sent, count, cause, err
}

// kindFor returns the request the server times GEMMs with on pool's device now.
func (s *Server) kindFor(pool *handlePool) protocol.RequestType {
	switch {
	case s.timing == TimingCompute, s.timing == TimingAuto && pool.mode.compute.Load():
		return protocol.ReqCompute
	default:
		return protocol.ReqGEMM
	}
}

// checkLink starts the decision again when h's device reports a new link to layer 5.
func (s *Server) checkLink(pool *handlePool, h *handle) {
	lg, ok := h.file.(LinkGenerationer)
	if !ok || s.timing == TimingCompute {
		return
	}
	gen := lg.LinkGeneration()
	if old := pool.mode.gen.Load(); old != gen && pool.mode.gen.CompareAndSwap(old, gen) {
		if pool.mode.reset() {
			s.log.Info().Int("device", pool.index).Uint64("link_generation", gen).
				Msg("the device's link to layer 5 is new: timing GEMMs with GEMM again until it refuses one")
		}
	}
}

// fallBack switches pool's device to COMPUTE after it refused a GEMM; the first op to
// find out logs it.
func (s *Server) fallBack(pool *handlePool, why error) {
	if !pool.mode.compute.Swap(true) {
		s.fallbacks.Add(1)
		s.log.Info().Int("device", pool.index).AnErr("answer", why).
			Msg("the device does not know GEMM: timing each GEMM as one COMPUTE of 2·M·N·K units, latency_model 0, as the reference device server does")
	}
}

// noBatched switches pool's device to GEMM × count for its batches after it refused a
// BATCHED_GEMM; the first op to find out logs it.
func (s *Server) noBatched(pool *handlePool, why error) {
	if !pool.mode.noBatched.Swap(true) {
		s.log.Info().Int("device", pool.index).AnErr("answer", why).
			Msg("the device does not know BATCHED_GEMM: timing each batch of equal GEMMs as one GEMM scaled by the count")
	}
}

// listsFor reports whether a TIME frame's batches go to pool's device as GEMM_LIST now.
func (s *Server) listsFor(pool *handlePool) bool {
	return s.kindFor(pool) == protocol.ReqGEMM && !pool.mode.noLists.Load()
}

// noLists switches pool's device to one request per batch for TIME frames after it
// refused a GEMM_LIST; the first frame to find out logs it.
func (s *Server) noLists(pool *handlePool, why error) {
	if !pool.mode.noLists.Swap(true) {
		s.log.Info().Int("device", pool.index).AnErr("answer", why).
			Msg("the device does not know GEMM_LIST: timing a TIME frame's shapes one request each")
	}
}

// TimingModes returns, per device, the request its GEMMs are timed with now ("gemm" or
// "compute"); /stats shows it, and so can an INFO answer.
func (s *Server) TimingModes() []string {
	modes := make([]string, len(s.devices))
	for i, p := range s.devices {
		if s.kindFor(p) == protocol.ReqCompute {
			modes[i] = TimingCompute.String()
		} else {
			modes[i] = TimingGEMM.String()
		}
	}
	return modes
}

// add accumulates count GEMMs with the device's answer r, and reports false if a total
// would not fit in 64 bits.
func (t *Timing) add(r protocol.GEMMResult, count uint64) bool {
	ok := true
	acc := func(total *uint64, v uint64) {
		hi, lo := bits.Mul64(v, count)
		sum, carry := bits.Add64(*total, lo, 0)
		if hi != 0 || carry != 0 {
			ok = false
		}
		*total = sum
	}
	acc(&t.Cycles, r.Cycles)
	acc(&t.ComputeCycles, r.ComputeCycles)
	acc(&t.MemoryCycles, r.MemoryCycles)
	acc(&t.MemoryBytes, r.MemoryBytes)
	return ok
}

// coalesce groups consecutive GEMMs of equal shape into batches: the device's models are
// deterministic functions of the shape, so equal GEMMs are timed with one request and
// scaled, instead of one round trip each.
func coalesce(gemms []linalg.GEMMShape) []linalg.GEMMBatch {
	var batches []linalg.GEMMBatch
	for _, g := range gemms {
		if n := len(batches); n > 0 && batches[n-1].Shape == g {
			batches[n-1].Count++
			continue
		}
		batches = append(batches, linalg.GEMMBatch{Shape: g, Count: 1})
	}
	return batches
}

// float32Size is the dtype size of every tensor the front end accepts.
const float32Size = 4

// Details of the untimed causes that carry no error of their own.
var (
	errNoDevice = errors.New("no device configured")
	errOverflow = errors.New("op's total cycles or bytes overflow 64 bits")
)

// timeOne sends one timing request of kind (ReqGEMM; ReqBatchedGEMM of count GEMMs; or
// ReqCompute of 2·M·N·K units) for g on h and reads its answer. answered reports whether the device answered, whatever
// the status; on failure the cause says why, with the detail. A status INVALID is
// UntimedRefused, which the caller turns into a fallback or UntimedDeviceError.
func (s *Server) timeOne(h *handle, g linalg.GEMMShape, kind protocol.RequestType, count uint64) (protocol.GEMMResult, bool, UntimedCause, error) {
	if !fits32(g) {
		return protocol.GEMMResult{}, false, UntimedInvalidShape, fmt.Errorf("GEMM %d×%d×%d does not fit the device's 32-bit dimensions", g.M, g.N, g.K)
	}
	switch kind {
	case protocol.ReqCompute:
		units, ok := computeUnits(uint64(g.M), uint64(g.N), uint64(g.K))
		if !ok {
			return protocol.GEMMResult{}, false, UntimedOverflow, fmt.Errorf("2·%d·%d·%d compute units overflow 64 bits", g.M, g.N, g.K)
		}
		clear(h.req.Payload[:timingPayloadSize]) // another kind's fields before
		h.req.SetCompute(protocol.Compute{ComputeUnits: units, LatencyModel: ComputeLatencyModel})
	case protocol.ReqBatchedGEMM:
		clear(h.req.Payload[:timingPayloadSize])
		h.req.SetBatchedGEMM(protocol.BatchedGEMM{M: uint32(g.M), N: uint32(g.N), K: uint32(g.K), DtypeSize: float32Size, Batch: count})
	default:
		h.req.SetGEMM(protocol.GEMM{M: uint32(g.M), N: uint32(g.N), K: uint32(g.K), DtypeSize: float32Size})
	}
	if answered, cause, err := s.roundTrip(h, timingPayloadSize, timingResultSize); err != nil {
		return protocol.GEMMResult{}, answered, cause, err
	}
	if kind == protocol.ReqCompute {
		// The device's cycles are the GEMM's, all of them compute; it says nothing of memory.
		c := h.resp.Compute().Cycles
		return protocol.GEMMResult{Cycles: c, ComputeCycles: c}, true, UntimedNone, nil
	}
	return h.resp.GEMM(), true, UntimedNone, nil
}

// fits32 reports whether g's dimensions are positive and fit the device's 32-bit fields.
func fits32(g linalg.GEMMShape) bool {
	return g.M > 0 && g.N > 0 && g.K > 0 && uint64(g.M) <= math.MaxUint32 && uint64(g.N) <= math.MaxUint32 && uint64(g.K) <= math.MaxUint32
}

// roundTrip sends h.req (its type and payload filled in) with a fresh user_data tag,
// encoding only the header and the first payloadBytes, and reads the answer into h.resp,
// decoding the header and the first resultBytes. answered reports whether the device
// answered, whatever the status; on failure the cause says why, with the detail (a status
// INVALID is UntimedRefused).
func (s *Server) roundTrip(h *handle, payloadBytes, resultBytes int) (answered bool, cause UntimedCause, err error) {
	tag := s.tag.Add(1)
	h.req.UserData = tag
	if err := h.req.EncodePrefix(h.wbuf[:], payloadBytes); err != nil {
		return false, UntimedDeviceError, err
	}
	if _, err := h.file.Write(h.wbuf[:]); err != nil {
		return false, deviceCause(err), fmt.Errorf("device write: %w", err)
	}
	n, err := h.file.Read(h.rbuf[:])
	if err != nil {
		return true, deviceCause(err), fmt.Errorf("device read: %w", err)
	}
	if err := h.resp.DecodePrefix(h.rbuf[:n], resultBytes); err != nil {
		return true, UntimedDeviceError, fmt.Errorf("device read: %w", err)
	}
	if h.resp.UserData != tag {
		return true, UntimedDeviceError, fmt.Errorf("device answered user_data %#x for request %#x", h.resp.UserData, tag)
	}
	cause, err = statusCause(h.resp.Status, h.req.Type)
	return true, cause, err
}

// statusCause returns the cause and detail of an answer to a kind request with status
// st, or a nil error for OK. INVALID is UntimedRefused, which the caller turns into a
// fallback or UntimedDeviceError.
func statusCause(st protocol.Status, kind protocol.RequestType) (UntimedCause, error) {
	switch st {
	case protocol.StatusOK:
		return UntimedNone, nil
	case protocol.StatusNoDevice:
		return UntimedLinkDown, fmt.Errorf("device status %s", st)
	case protocol.StatusTimeout:
		return UntimedTimeout, fmt.Errorf("device status %s", st)
	case protocol.StatusInvalid:
		return UntimedRefused, fmt.Errorf("device answered %s %s", kind, st)
	default:
		return UntimedDeviceError, fmt.Errorf("device status %s", st)
	}
}

// timeList sends the leading batches of shapes (at most MaxGEMMListEntries, and only
// those before the first that does not fit the device's 32-bit dimensions) as one
// GEMM_LIST on h and fills answers with the answered entries, the whole batch's cost
// each. It returns how many batches were answered, from the first on (fewer than were
// sent when the device stopped at one it could not answer), and the requests the device
// answered (0 or 1); on failure the cause says why, with the detail, as timeOne does.
func (s *Server) timeList(h *handle, shapes []linalg.GEMMBatch, answers []protocol.GEMMResult) (n, sent int, cause UntimedCause, err error) {
	count := 0
	for _, b := range shapes[:min(len(shapes), protocol.MaxGEMMListEntries)] {
		g := b.Shape
		if !fits32(g) || b.Count <= 0 {
			break
		}
		h.req.SetGEMMListEntry(count, protocol.GEMMListEntry{M: uint32(g.M), N: uint32(g.N), K: uint32(g.K), Batch: uint64(b.Count)})
		count++
	}
	if count == 0 {
		return 0, 0, UntimedNone, nil // the first batch alone, for its own error
	}
	size := protocol.GEMMListSize(count)
	defer func() {
		// Every later request encodes only the first timingPayloadSize payload bytes:
		// the rest of the handle's request and wbuf must be zero again.
		clear(h.req.Payload[timingPayloadSize:size])
		clear(h.wbuf[protocol.RequestHeaderSize+timingPayloadSize : protocol.RequestHeaderSize+size])
	}()
	h.req.SetGEMMListHeader(uint32(count), float32Size)
	answered, cause, err := s.roundTrip(h, size, count*protocol.GEMMListResultSize)
	if answered {
		sent = 1
	}
	if err != nil {
		return 0, sent, cause, err
	}
	if h.resp.Result > uint64(count) {
		return 0, 1, UntimedDeviceError, fmt.Errorf("device answered %d entries of a GEMM_LIST of %d", h.resp.Result, count)
	}
	n = int(h.resp.Result)
	for i := range n {
		answers[i] = h.resp.GEMMListResult(i)
	}
	return n, 1, UntimedNone, nil
}

// Payload bytes of the timing requests and their answers. A handle's request payload is
// written only in its first timingPayloadSize bytes (SetGEMM, SetBatchedGEMM, SetCompute),
// so it and wbuf stay zero beyond them, and timeOne encodes only the header and those
// bytes; of an answer it decodes only the header and the first timingResultSize
// (GEMMResult, the largest of the results, a BATCHED_GEMM answer's included).
const (
	timingPayloadSize = 32
	timingResultSize  = 40
)

// handle is one open device file with its request and response buffers.
type handle struct {
	file DeviceFile
	req  protocol.Request
	resp protocol.Response
	wbuf [protocol.RequestSize]byte
	rbuf [protocol.ResponseSize]byte
}

// handlePool keeps up to max open handles on one device; callers beyond that wait.
type handlePool struct {
	index int        // the device's place in Config.Devices, for logs
	mode  deviceMode // under TimingAuto: which request times this device's GEMMs
	open  Opener
	idle  chan *handle
	slots chan struct{} // one token per handle that may exist
	mu    sync.Mutex
	shut  bool
}

func newHandlePool(open Opener, max int) *handlePool {
	return &handlePool{open: open, idle: make(chan *handle, max), slots: make(chan struct{}, max)}
}

// get returns an idle handle, or opens one while fewer than max exist, or waits for one;
// on failure it says why as an UntimedCause, with the detail.
func (p *handlePool) get(ctx context.Context) (*handle, UntimedCause, error) {
	p.mu.Lock()
	shut := p.shut
	p.mu.Unlock()
	if shut {
		return nil, UntimedClosed, errServerClosed
	}
	select {
	case h := <-p.idle:
		return h, UntimedNone, nil
	default:
	}
	select {
	case h := <-p.idle:
		return h, UntimedNone, nil
	case p.slots <- struct{}{}:
		f, err := p.open()
		if err != nil {
			<-p.slots
			// Whatever stops an open (ENODEV before the device is ready, a missing
			// file, a permission), the device cannot be used.
			return nil, UntimedDeviceUnavailable, fmt.Errorf("device open: %w", err)
		}
		return &handle{file: f}, UntimedNone, nil
	case <-ctx.Done():
		return nil, UntimedCanceled, ctx.Err()
	}
}

func (p *handlePool) put(h *handle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		h.file.Close()
		<-p.slots
		return
	}
	p.idle <- h // never blocks: at most cap(slots) handles exist
}

// discard closes a handle after an error, so a later op opens a fresh one.
func (p *handlePool) discard(h *handle) {
	h.file.Close()
	<-p.slots
}

func (p *handlePool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shut = true
	var errs []error
	for {
		select {
		case h := <-p.idle:
			errs = append(errs, h.file.Close())
			<-p.slots
		default:
			return errors.Join(errs...)
		}
	}
}
