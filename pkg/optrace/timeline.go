package optrace

import (
	"math"
	"sync"
)

// Timeline is the simulated timeline of each device: a device runs its ops one after
// another in simulated time. Its cursor starts at cycle 0 and, each time an op's timing is
// complete (its last timing answer has come back up to the front end), the op is given the
// interval [cursor, cursor+cycles) and the cursor moves to its end. Ops are therefore
// placed in the order their timing completes on that device, never overlapping; the ops of
// one TIME frame are placed together, in entry order (ReserveRun). Untimed ops take no
// interval. The cursor saturates at 2^64−1 instead of wrapping. Timeline is safe for
// concurrent use.
type Timeline struct {
	mu      sync.Mutex
	cursors []uint64
}

// NewTimeline returns the timelines of devices devices, all at cycle 0.
func NewTimeline(devices int) *Timeline {
	return &Timeline{cursors: make([]uint64, max(devices, 0))}
}

// Devices returns the number of devices.
func (t *Timeline) Devices() int { return len(t.cursors) }

// Reserve places an op of cycles cycles on device and returns its interval. A device out
// of range gets the interval [0, 0) and moves nothing.
func (t *Timeline) Reserve(device int, cycles uint64) (start, end uint64) {
	if device < 0 || device >= len(t.cursors) {
		return 0, 0
	}
	t.mu.Lock()
	start = t.cursors[device]
	end = satAdd(start, cycles)
	t.cursors[device] = end
	t.mu.Unlock()
	return start, end
}

// ReserveRun places the timed records of recs on device one after another, in order, as
// one reservation (no other op lands between them), filling their StartCycle and EndCycle.
func (t *Timeline) ReserveRun(device int, recs []Record) {
	if device < 0 || device >= len(t.cursors) {
		return
	}
	t.mu.Lock()
	cur := t.cursors[device]
	for i := range recs {
		if !recs[i].Timed {
			continue
		}
		recs[i].StartCycle = cur
		cur = satAdd(cur, recs[i].Cycles)
		recs[i].EndCycle = cur
	}
	t.cursors[device] = cur
	t.mu.Unlock()
}

// Now returns device's cursor: the end of the last op placed on it.
func (t *Timeline) Now(device int) uint64 {
	if device < 0 || device >= len(t.cursors) {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cursors[device]
}

func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}
