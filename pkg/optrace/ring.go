package optrace

import "sync"

// DefaultRingSize is how many recent records /ops keeps unless told otherwise.
const DefaultRingSize = 1024

// Ring keeps the most recent records, at most its size, for /ops. It is safe for
// concurrent use.
type Ring struct {
	mu    sync.Mutex
	recs  []Record
	next  int    // where the next record goes
	total uint64 // records ever added
}

// NewRing returns a ring of size records (DefaultRingSize if ≤ 0).
func NewRing(size int) *Ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &Ring{recs: make([]Record, 0, size)}
}

// Add stores copies of recs, evicting the oldest beyond the ring's size.
func (r *Ring) Add(recs []Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range recs {
		r.total++
		if len(r.recs) < cap(r.recs) {
			r.recs = append(r.recs, recs[i])
			continue
		}
		r.recs[r.next] = recs[i]
		r.next = (r.next + 1) % len(r.recs)
	}
}

// Snapshot returns the stored records, oldest first, and how many were ever added.
func (r *Ring) Snapshot() ([]Record, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, len(r.recs))
	out = append(out, r.recs[r.next:]...)
	out = append(out, r.recs[:r.next]...)
	return out, r.total
}

// AppendJSON appends {"total": N, "size": S, "ops": [record, …]} (oldest first).
func (r *Ring) AppendJSON(b []byte) []byte {
	recs, total := r.Snapshot()
	b = append(b, `{"total":`...)
	b = appendUint(b, total)
	b = append(b, `,"size":`...)
	b = appendUint(b, uint64(cap(r.recs)))
	b = append(b, `,"ops":[`...)
	for i := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = recs[i].AppendJSON(b)
	}
	return append(b, "]}"...)
}
