package deviceserver

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// DefaultEntryWorkers is how many timing requests one TIME frame has in flight at once
// unless Config.EntryWorkers says otherwise (each on its own device handle, within the
// device's MaxHandles): enough to hide the round trip of an SST behind a socket.
const DefaultEntryWorkers = 16

// TimeEntries times the GEMM batches of many ops with no numerics (a TIME frame), all on
// one device, the next in round-robin order, whose index it returns (-1 with no device).
// The device's models are deterministic functions of the request, so each distinct
// batch of the frame is timed once: while the device may take BATCHED_GEMM, each distinct
// batch (shape and count) of more than one GEMM and each distinct shape of the single
// ones; otherwise each distinct shape, scaled by each batch's count (a device that refuses
// BATCHED_GEMM in the middle of a frame has that batch timed as a GEMM × count). They go
// as GEMM_LIST requests of up to protocol.MaxGEMMListEntries batches while the device
// takes them, else one request each (see TimingRequest), with up to Config.EntryWorkers
// requests in flight. An entry's timing is the sum of its batches' answers, and its
// Requests the number of its batches (each timed by one request or one list entry, which
// equal batches of the frame share). An entry whose shape the device could not time is
// untimed with the reason; the others are not affected.
func (s *Server) TimeEntries(ctx context.Context, entries [][]linalg.GEMMBatch) (device int, out []Timing) {
	out = make([]Timing, len(entries))
	if len(s.devices) == 0 {
		for i := range out {
			out[i] = Timing{Untimed: UntimedNoDevice, UntimedErr: errNoDevice}
		}
		return -1, out
	}
	device = int((s.next.Add(1) - 1) % uint64(len(s.devices)))
	pool := s.devices[device]

	// A batch goes as one BATCHED_GEMM only while the device may take it; otherwise its
	// shape's one answer serves every count.
	batched := s.kindFor(pool) == protocol.ReqGEMM && !pool.mode.noBatched.Load()
	keyOf := func(b linalg.GEMMBatch) linalg.GEMMBatch {
		if batched && b.Count > 1 {
			return b
		}
		return linalg.GEMMBatch{Shape: b.Shape, Count: 1}
	}
	n := 0
	for _, e := range entries {
		n += len(e)
	}
	index := make(map[linalg.GEMMBatch]int, n)
	shapes := make([]linalg.GEMMBatch, 0, n)
	which := make([]int, 0, n) // per batch of every entry in order: its request in shapes
	for _, e := range entries {
		for _, b := range e {
			k := keyOf(b)
			j, ok := index[k]
			if !ok {
				j = len(shapes)
				shapes = append(shapes, k)
				index[k] = j
			}
			which = append(which, j)
		}
	}
	answers := make([]protocol.GEMMResult, len(shapes))
	fails := make([]failure, len(shapes))
	kinds := make([]protocol.RequestType, len(shapes))
	s.timeShapes(ctx, pool, shapes, answers, fails, kinds)

	for i, e := range entries {
		t := Timing{Timed: true}
		requests := which[:len(e)]
		which = which[len(e):]
		for bi, b := range e {
			j := requests[bi]
			t.Requests++
			if kindRank(kinds[j]) > kindRank(t.Kind) {
				t.Kind = kinds[j]
			}
			if kinds[j] == protocol.ReqCompute {
				t.ComputeRequests++
			}
			if f := fails[j]; f.err != nil {
				t = Timing{Requests: t.Requests, Untimed: f.cause, UntimedErr: f.err}
				break
			}
			if !t.add(answers[j], uint64(b.Count/shapes[j].Count)) { // answers hold the whole key batch's cost
				t = Timing{Requests: t.Requests, Untimed: UntimedOverflow, UntimedErr: errOverflow}
				break
			}
		}
		out[i] = t
	}
	s.log.Debug().Int("device", device).Int("entries", len(entries)).Int("gemm_requests", len(shapes)).Msg("time entries")
	return device, out
}

// kindRank orders the requests that time an entry's batches: the entry's Kind is its
// batches' highest (COMPUTE, then GEMM_LIST, then BATCHED_GEMM, then GEMM).
func kindRank(k protocol.RequestType) int {
	switch k {
	case protocol.ReqCompute:
		return 4
	case protocol.ReqGEMMList:
		return 3
	case protocol.ReqBatchedGEMM:
		return 2
	case protocol.ReqGEMM:
		return 1
	default:
		return 0
	}
}

// failure is why a shape of a TIME frame could not be timed.
type failure struct {
	cause UntimedCause
	err   error
}

// timeShapes asks the device behind pool for each batch, from up to s.entryWorkers
// goroutines with a handle each, filling answers (the whole batch's cost) or fails at the
// batch's index. kinds gets the request each batch was timed with (see TimingRequest).
// While the device may take GEMM_LIST, each goroutine takes up to MaxGEMMListEntries
// batches at a time and sends them as one list; a batch the list's answer stops at is
// sent alone, for its own answer or error, and the rest go as a list again.
func (s *Server) timeShapes(ctx context.Context, pool *handlePool, shapes []linalg.GEMMBatch, answers []protocol.GEMMResult, fails []failure, kinds []protocol.RequestType) {
	var next atomic.Int64
	var answered, computed atomic.Uint64
	// take returns the next n batches' range, or an empty one when none are left.
	take := func(n int) (lo, hi int) {
		hi = int(next.Add(int64(n)))
		return min(hi-n, len(shapes)), min(hi, len(shapes))
	}
	work := func() {
		var h *handle
		// open gives the worker a handle if it has none, or says why it cannot.
		open := func() (failure, bool) {
			if h != nil {
				return failure{}, true
			}
			var f failure
			h, f.cause, f.err = pool.get(ctx)
			return f, f.err == nil
		}
		for int(next.Load()) < len(shapes) {
			if f, ok := open(); !ok {
				lo, hi := take(1)
				if lo == hi {
					break
				}
				fails[lo] = f
				continue
			}
			s.checkLink(pool, h) // before choosing: a new link may take lists again
			n := 1
			if s.listsFor(pool) {
				n = protocol.MaxGEMMListEntries
			}
			lo, hi := take(n)
			if lo == hi {
				break
			}
			for lo < hi {
				if f, ok := open(); !ok {
					fails[lo] = f
					lo++
					continue
				}
				s.checkLink(pool, h)
				if hi-lo > 1 && s.listsFor(pool) {
					n, sent, cause, err := s.timeList(h, shapes[lo:hi], answers[lo:hi])
					answered.Add(uint64(sent))
					for j := lo; j < lo+n; j++ {
						kinds[j] = protocol.ReqGEMMList
					}
					lo += n
					switch {
					case err == nil:
						// The answer stopped short of hi at shapes[lo], or ended the chunk.
					case cause == UntimedRefused:
						s.noLists(pool, err) // the rest, this chunk's included, one request each
					default:
						// The device or its link failed: the chunk's other batches would
						// meet the same; a later chunk starts on a fresh handle.
						for j := lo; j < hi; j++ {
							fails[j] = failure{cause, err}
						}
						lo = hi
						h, _ = s.afterFailure(pool, h, cause)
						continue
					}
					if lo == hi {
						continue
					}
				}
				var sent, comp int
				h, sent, comp = s.timeShape(pool, h, shapes[lo], &answers[lo], &fails[lo], &kinds[lo])
				answered.Add(uint64(sent))
				computed.Add(uint64(comp))
				lo++
			}
		}
		if h != nil {
			pool.put(h)
		}
	}
	chunk := 1 // as the device takes them now: the workers that have work
	if s.listsFor(pool) {
		chunk = protocol.MaxGEMMListEntries
	}
	workers := min((len(shapes)+chunk-1)/chunk, s.entryWorkers, cap(pool.slots))
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	if workers > 0 {
		work()
	}
	wg.Wait()
	s.stats.requests.Add(answered.Load())
	s.stats.computeRequests.Add(computed.Load())
}

// timeShape times one batch on h with the device's current kind, falling back to COMPUTE
// if the device refuses GEMM (TimingAuto), into answer, fail and kind. It returns the
// handle to go on with (nil when h was discarded after a failure), the requests the
// device answered and how many of them were COMPUTE.
func (s *Server) timeShape(pool *handlePool, h *handle, b linalg.GEMMBatch, answer *protocol.GEMMResult, fail *failure, kind *protocol.RequestType) (*handle, int, int) {
	k := s.kindFor(pool)
	r, sent, scale, cause, err := s.timeBatch(h, pool, b, k)
	answered, computed := sent, 0
	if cause == UntimedRefused && s.timing == TimingAuto && k == protocol.ReqGEMM {
		// The device does not know GEMM: this shape and the rest go as COMPUTE.
		s.fallBack(pool, err)
		k = protocol.ReqCompute
		r, sent, scale, cause, err = s.timeBatch(h, pool, b, k)
		answered += sent
	}
	if k == protocol.ReqCompute {
		computed = sent
	}
	if err == nil && scale == 1 && b.Count > 1 {
		k = protocol.ReqBatchedGEMM
	}
	*kind = k
	if err != nil {
		h, cause = s.afterFailure(pool, h, cause)
		*fail = failure{cause, err}
		return h, answered, computed
	}
	var total Timing
	if !total.add(r, scale) {
		*fail = failure{UntimedOverflow, errOverflow}
		return h, answered, computed
	}
	*answer = protocol.GEMMResult{Cycles: total.Cycles, ComputeCycles: total.ComputeCycles,
		MemoryCycles: total.MemoryCycles, MemoryBytes: total.MemoryBytes}
	return h, answered, computed
}
