package optrace

import "sync"

// Recorder sends every frame's records to the sinks that are set: the trace, the op log and
// the ring of recent records. A nil *Recorder records nothing. It is safe for concurrent
// use.
type Recorder struct {
	Trace *Trace
	Log   *Log
	Ring  *Ring

	scratch sync.Pool // *encoding: the records' JSON and the log's lines
}

// encoding is the scratch of one Add: every record's JSON, encoded once for both the trace
// and the log.
type encoding struct {
	buf, line []byte
	recs      [][]byte
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
	if r.Trace != nil || r.Log != nil {
		enc, _ := r.scratch.Get().(*encoding)
		if enc == nil {
			enc = new(encoding)
		}
		enc.buf, enc.recs = enc.buf[:0], enc.recs[:0]
		offs := make([]int, 0, 8)
		for i := range recs {
			offs = append(offs, len(enc.buf))
			enc.buf = recs[i].AppendJSON(enc.buf)
		}
		for i, off := range offs {
			end := len(enc.buf)
			if i+1 < len(offs) {
				end = offs[i+1]
			}
			enc.recs = append(enc.recs, enc.buf[off:end])
		}
		if r.Trace != nil {
			r.Trace.add(recs, enc.recs, sp)
		}
		if r.Log != nil {
			enc.line = r.Log.addEncoded(enc.recs, enc.line)
		}
		if cap(enc.buf) <= 1<<20 && cap(enc.line) <= 1<<20 {
			r.scratch.Put(enc)
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
