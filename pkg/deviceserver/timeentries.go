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
// request of the frame is sent once, with up to Config.EntryWorkers in flight: while the
// device may take BATCHED_GEMM, one per distinct batch (shape and count) of more than one
// GEMM and one GEMM per distinct shape of the single ones; otherwise one request per
// distinct shape, scaled by each batch's count (a device that refuses BATCHED_GEMM in the
// middle of a frame has that batch timed as a GEMM × count; see TimingRequest). An
// entry's timing is the sum of its batches' answers, and its Requests the number of its
// batches (each timed by one request, which equal batches of the frame share). An entry
// whose shape the device could not time is untimed with the reason; the others are not
// affected.
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
			if t.Kind != protocol.ReqBatchedGEMM || kinds[j] == protocol.ReqCompute {
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

// failure is why a shape of a TIME frame could not be timed.
type failure struct {
	cause UntimedCause
	err   error
}

// timeShapes asks the device behind pool for each batch, from up to s.entryWorkers
// goroutines with a handle each, filling answers (the whole batch's cost) or fails at the
// batch's index. kinds gets the request each batch was timed with (see TimingRequest).
func (s *Server) timeShapes(ctx context.Context, pool *handlePool, shapes []linalg.GEMMBatch, answers []protocol.GEMMResult, fails []failure, kinds []protocol.RequestType) {
	var next atomic.Int64
	var answered, computed atomic.Uint64
	work := func() {
		var h *handle
		for {
			i := int(next.Add(1) - 1)
			if i >= len(shapes) {
				break
			}
			if h == nil {
				var cause UntimedCause
				var err error
				if h, cause, err = pool.get(ctx); err != nil {
					fails[i] = failure{cause, err}
					continue
				}
			}
			s.checkLink(pool, h)
			kind := s.kindFor(pool)
			r, sent, scale, cause, err := s.timeBatch(h, pool, shapes[i], kind)
			if cause == UntimedRefused && s.timing == TimingAuto && kind == protocol.ReqGEMM {
				// The device does not know GEMM: this shape and the rest go as COMPUTE.
				answered.Add(uint64(sent))
				s.fallBack(pool, err)
				kind = protocol.ReqCompute
				r, sent, scale, cause, err = s.timeBatch(h, pool, shapes[i], kind)
			}
			answered.Add(uint64(sent))
			if kind == protocol.ReqCompute {
				computed.Add(uint64(sent))
			}
			if err == nil && scale == 1 && shapes[i].Count > 1 {
				kind = protocol.ReqBatchedGEMM
			}
			kinds[i] = kind
			if err != nil {
				switch cause {
				case UntimedInvalidShape, UntimedOverflow, UntimedRefused:
					// nothing was sent, or the device refused it: the handle is as good as before
				default:
					pool.discard(h)
					h = nil
				}
				if cause == UntimedLinkDown {
					pool.mode.compute.Store(false) // another SST may answer when the link is back
					pool.mode.noBatched.Store(false)
				}
				if cause == UntimedRefused {
					cause = UntimedDeviceError
				}
				fails[i] = failure{cause, err}
				continue
			}
			var total Timing
			if !total.add(r, scale) {
				fails[i] = failure{UntimedOverflow, errOverflow}
				continue
			}
			answers[i] = protocol.GEMMResult{Cycles: total.Cycles, ComputeCycles: total.ComputeCycles,
				MemoryCycles: total.MemoryCycles, MemoryBytes: total.MemoryBytes}
		}
		if h != nil {
			pool.put(h)
		}
	}
	workers := min(len(shapes), s.entryWorkers, cap(pool.slots))
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
