package optrace

import "sync"

// Recorder sends every frame's records to the sinks that are set: the trace, the op log and
// the ring of recent records. A nil *Recorder records nothing. It is safe for concurrent
// use.
type Recorder struct {
	Trace *Trace
	Log   *Log
	Ring  *Ring

	scratch sync.Pool // *[]byte for the log's encoding
}

// Enabled reports whether any sink is set, so that callers can skip building spans.
func (r *Recorder) Enabled() bool {
	return r != nil && (r.Trace != nil || r.Log != nil || r.Ring != nil)
}

// Add records one frame: its records (one per op, or one per TIME entry) and its spans
// (nil: no host spans).
func (r *Recorder) Add(recs []Record, sp *Spans) {
	if r == nil {
		return
	}
	if r.Trace != nil {
		r.Trace.Add(recs, sp)
	}
	if r.Log != nil {
		bp, _ := r.scratch.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		b := r.Log.Add(recs, *bp)
		if cap(b) <= 1<<20 {
			*bp = b
			r.scratch.Put(bp)
		}
	}
	if r.Ring != nil {
		r.Ring.Add(recs)
	}
}

// Stats are the counters of the trace and the log writers.
type Stats struct {
	Trace *SinkStats `json:"trace,omitempty"`
	Log   *SinkStats `json:"op_log,omitempty"`
}

// Stats returns the counters of the sinks that are set.
func (r *Recorder) Stats() Stats {
	var st Stats
	if r == nil {
		return st
	}
	if r.Trace != nil {
		s := r.Trace.Stats()
		st.Trace = &s
	}
	if r.Log != nil {
		s := r.Log.Stats()
		st.Log = &s
	}
	return st
}
