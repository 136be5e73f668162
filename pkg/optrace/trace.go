package optrace

import (
	"context"
	"io"
	"math"
	"strconv"
	"sync"
	"time"
)

// Track layout of a trace: device i is process DevicePID(i) with one thread, the ops track;
// the host is one more process with a thread per connection (its id).
const (
	// OpsTID is the thread id of every device's ops track.
	OpsTID = 1
	// HostProcessName names the host's process; its tracks are in wall-clock time.
	HostProcessName = "host (wall clock)"
	// OpsTrackName names each device's track of simulated op intervals.
	OpsTrackName = "ops"
	// DefaultClockHz converts cycles to simulated time when layer 5 does not say its clock:
	// SST's default, 1 GHz.
	DefaultClockHz = 1e9
)

// DevicePID returns the process id of device i in a trace.
func DevicePID(i int) int { return i + 1 }

// HostPID returns the process id of the host in a trace of devices devices.
func HostPID(devices int) int { return devices + 1 }

// Spans are the wall-clock times of one frame on one connection, for the host's track.
// Decode starts at Start; compute and timing follow one another after it; Total covers
// them all.
type Spans struct {
	Conn                           uint64 // connection id (the host track's tid)
	Frame                          int64  // index of the frame on its connection; 0 names the track
	Name                           string // the op's name: gemm, conv, matmul, time, info
	Start                          time.Time
	Decode, Compute, Timing, Total time.Duration
	// HasCompute and HasTiming say which layers the frame went through (an op both, a
	// TIME frame timing only, INFO neither): their spans are written even when 0 long.
	HasCompute, HasTiming bool
}

// TraceOptions configure a Trace.
type TraceOptions struct {
	// Devices is the number of devices (processes of simulated time).
	Devices int
	// ClockHz converts cycles to simulated µs; DefaultClockHz if ≤ 0.
	ClockHz float64
	// BufferBytes bounds the events waiting for a slow writer (DefaultBufferBytes if ≤ 0);
	// more are dropped and counted.
	BufferBytes int
}

// Trace writes a Chrome/Perfetto trace (the JSON object form, {"traceEvents": [...]}) as
// the run goes: every op's simulated interval as a complete ("X") event on its device's ops
// track, ts and dur in simulated µs with the record as args; and on the host process, one
// track per connection with a span per frame and per layer (decode, compute, timing) in
// wall-clock µs since the trace began. The two clocks never share a track. The events are
// written by a goroutine from a bounded buffer; a trace cut off before Close (SIGKILL) lacks
// only its closing brackets, which the format allows.
type Trace struct {
	sink    *sink
	clockHz float64
	hostPID int
	epoch   time.Time
	pool    sync.Pool
}

// NewTrace starts a trace on w, writing its header and the names of its processes and
// tracks at once.
func NewTrace(w io.Writer, opts TraceOptions) (*Trace, error) {
	clk := opts.ClockHz
	if !(clk > 0) || math.IsInf(clk, 0) {
		clk = DefaultClockHz
	}
	t := &Trace{clockHz: clk, hostPID: HostPID(opts.Devices), epoch: time.Now()}
	b := []byte(`{"traceEvents":[` + "\n")
	b = appendMeta(b, "process_name", t.hostPID, 0, HostProcessName)
	b = appendSortIndex(append(b, ",\n"...), t.hostPID, opts.Devices)
	for i := range opts.Devices {
		b = appendMeta(append(b, ",\n"...), "process_name", DevicePID(i), 0, "device "+strconv.Itoa(i)+" (simulated)")
		b = appendSortIndex(append(b, ",\n"...), DevicePID(i), i)
		b = appendMeta(append(b, ",\n"...), "thread_name", DevicePID(i), OpsTID, OpsTrackName)
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	t.sink = newSink(w, opts.BufferBytes)
	return t, nil
}

func appendMeta(b []byte, name string, pid, tid int, value string) []byte {
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = append(b, `","ph":"M","pid":`...)
	b = appendInt(b, int64(pid))
	b = append(b, `,"tid":`...)
	b = appendInt(b, int64(tid))
	b = append(b, `,"args":{"name":`...)
	b = AppendString(b, value)
	return append(b, "}}"...)
}

func appendSortIndex(b []byte, pid, index int) []byte {
	b = append(b, `{"name":"process_sort_index","ph":"M","pid":`...)
	b = appendInt(b, int64(pid))
	b = append(b, `,"tid":0,"args":{"sort_index":`...)
	b = appendInt(b, int64(index))
	return append(b, "}}"...)
}

// Add writes the events of one frame: each timed record's interval on its device's track
// and the frame's spans on its connection's track. It never blocks on the writer.
func (t *Trace) Add(recs []Record, sp *Spans) { t.add(recs, nil, sp) }

// add is Add with the records' JSON already encoded (encoded[i] is recs[i]'s), or nil.
func (t *Trace) add(recs []Record, encoded [][]byte, sp *Spans) {
	bp, _ := t.pool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := (*bp)[:0]
	for i := range recs {
		r := &recs[i]
		if !r.Timed || r.Device < 0 {
			continue
		}
		b = append(b, ",\n"...)
		var js []byte
		if encoded != nil {
			js = encoded[i]
		}
		b = t.appendOp(b, r, js)
	}
	if sp != nil {
		b = t.appendSpans(b, sp)
	}
	if len(b) > 0 {
		t.sink.add(b)
	}
	if cap(b) <= 1<<20 {
		*bp = b
		t.pool.Put(bp)
	}
}

// appendOp appends r's complete event on its device's ops track; js is r's JSON, or nil to
// encode it here.
func (t *Trace) appendOp(b []byte, r *Record, js []byte) []byte {
	start, end := t.simNS(r.StartCycle), t.simNS(r.EndCycle)
	b = append(b, `{"name":`...)
	b = AppendString(b, r.Op)
	b = append(b, `,"cat":"op","ph":"X","pid":`...)
	b = appendInt(b, int64(DevicePID(r.Device)))
	b = append(b, `,"tid":`...)
	b = appendInt(b, OpsTID)
	b = append(b, `,"ts":`...)
	b = appendMicros(b, start)
	b = append(b, `,"dur":`...)
	b = appendMicros(b, end-start)
	b = append(b, `,"args":`...)
	if js != nil {
		b = append(b, js...)
	} else {
		b = r.AppendJSON(b)
	}
	return append(b, '}')
}

// simNS converts a cycle to whole simulated nanoseconds at the trace's clock (saturating).
// It is monotonic, so intervals that do not overlap in cycles do not overlap in ns.
func (t *Trace) simNS(cycle uint64) uint64 {
	ns := math.Floor(float64(cycle) * 1e9 / t.clockHz)
	if ns >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(ns)
}

// appendSpans appends the frame's span and its layers' spans on the connection's track.
func (t *Trace) appendSpans(b []byte, sp *Spans) []byte {
	if sp.Frame == 0 {
		b = append(b, ",\n"...)
		b = appendMeta(b, "thread_name", t.hostPID, int(sp.Conn), "conn "+strconv.FormatUint(sp.Conn, 10))
	}
	at := sp.Start.Sub(t.epoch)
	if at < 0 {
		at = 0
	}
	b = t.appendSpan(b, sp.Conn, sp.Name, "frame", at, sp.Total)
	b = t.appendSpan(b, sp.Conn, "decode", "layer", at, sp.Decode)
	at += sp.Decode
	if sp.HasCompute {
		b = t.appendSpan(b, sp.Conn, "compute", "layer", at, sp.Compute)
		at += sp.Compute
	}
	if sp.HasTiming {
		b = t.appendSpan(b, sp.Conn, "timing", "layer", at, sp.Timing)
	}
	return b
}

func (t *Trace) appendSpan(b []byte, conn uint64, name, cat string, at, dur time.Duration) []byte {
	b = append(b, ",\n"...)
	b = append(b, `{"name":`...)
	b = AppendString(b, name)
	b = append(b, `,"cat":"`...)
	b = append(b, cat...)
	b = append(b, `","ph":"X","pid":`...)
	b = appendInt(b, int64(t.hostPID))
	b = append(b, `,"tid":`...)
	b = appendUint(b, conn)
	b = append(b, `,"ts":`...)
	b = appendMicros(b, uint64(max(at, 0)))
	b = append(b, `,"dur":`...)
	b = appendMicros(b, uint64(max(dur, 0)))
	return append(b, '}')
}

// appendMicros writes ns nanoseconds as exact decimal microseconds, e.g. 1234 → 1.234.
func appendMicros(b []byte, ns uint64) []byte {
	b = appendUint(b, ns/1000)
	frac := ns % 1000
	if frac == 0 {
		return b
	}
	b = append(b, '.', byte('0'+frac/100))
	if frac%100 != 0 {
		b = append(b, byte('0'+frac/10%10))
		if d := frac % 10; d != 0 {
			b = append(b, byte('0'+d))
		}
	}
	return b
}

// Stats returns what the trace's writer has done: events written, dropped, bytes.
func (t *Trace) Stats() SinkStats { return t.sink.stats() }

// Close writes the pending events and the closing brackets, with the dropped count in
// otherData. It does not close the underlying writer.
func (t *Trace) Close() error { return t.CloseContext(context.Background()) }

// CloseContext is Close bounded by ctx: if the writer is still stuck in a write when ctx
// ends, the events not written are counted as dropped, the brackets are not written and
// the error wraps ErrWriterStuck.
func (t *Trace) CloseContext(ctx context.Context) error {
	return t.sink.close(ctx, func(st SinkStats) []byte {
		tail := []byte("\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":\"sstemu\",\"clock_hz\":")
		tail = AppendFloat(tail, t.clockHz)
		tail = append(tail, `,"dropped_frames":`...)
		tail = strconv.AppendUint(tail, st.Dropped, 10)
		return append(tail, "}}\n"...)
	})
}
