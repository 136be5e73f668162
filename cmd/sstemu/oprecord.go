package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/optrace"
)

// opRecordFlags are serve's flags for the records of a run: the trace, the op log and the
// ring behind /ops.
func opRecordFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "trace", EnvVars: []string{"SSTEMU_TRACE"}, Category: catRecords,
			Usage: "write a Chrome/Perfetto trace of the run to `FILE` (simulated ops per device, wall-clock spans per connection)"},
		&cli.StringFlag{Name: "op-log", EnvVars: []string{"SSTEMU_OP_LOG"}, Category: catRecords,
			Usage: "write every op's timing record to `FILE`, one JSON object per line"},
		&cli.IntFlag{Name: "ops-ring", Value: optrace.DefaultRingSize, EnvVars: []string{"SSTEMU_OPS_RING"}, Category: catRecords,
			Usage: fmt.Sprintf("how many recent timing records /ops on --http keeps (0: no /ops; at most %d)", maxOpsRing)},
		&cli.GenericFlag{Name: "record-buffer", Value: ptr(byteSize(optrace.DefaultBufferBytes)), EnvVars: []string{"SSTEMU_RECORD_BUFFER"}, Category: catRecords,
			Usage: "`SIZE` of trace events or log lines that may wait for a slow disk, each; beyond it records are dropped and counted"},
	}
}

// maxOpsRing bounds --ops-ring: a ring is allocated whole at start-up, and a million
// records (a few hundred MB) is already more than /ops is useful for.
const maxOpsRing = 1 << 20

// checkRecordFlags rejects --record-buffer and --ops-ring values that cannot work.
func checkRecordFlags(c *cli.Context) error {
	if b := byteFlag(c, "record-buffer"); b <= 0 || b > math.MaxInt32 {
		return fmt.Errorf("--record-buffer %d: want 1 byte … 2GiB", b)
	}
	if n := c.Int("ops-ring"); n < 0 || n > maxOpsRing {
		return fmt.Errorf("--ops-ring %d: want 0 (no /ops) … %d", n, maxOpsRing)
	}
	return nil
}

// opRecorder is the recorder of a run and the files it writes.
type opRecorder struct {
	*optrace.Recorder
	files []*os.File
}

// newOpRecorder opens the files the flags name; with none of them set (and no --http) it
// returns a recorder that records nothing.
func newOpRecorder(c *cli.Context, devices int, clockHz float64) (*opRecorder, error) {
	if err := checkRecordFlags(c); err != nil {
		return nil, err
	}
	r := &opRecorder{Recorder: &optrace.Recorder{}}
	buffer := int(byteFlag(c, "record-buffer"))
	if path := c.String("trace"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--trace: %w", err)
		}
		r.files = append(r.files, f)
		if r.Trace, err = optrace.NewTrace(f, optrace.TraceOptions{Devices: devices, ClockHz: clockHz, BufferBytes: buffer}); err != nil {
			r.close(context.Background())
			return nil, fmt.Errorf("--trace: %w", err)
		}
	}
	if path := c.String("op-log"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			r.close(context.Background())
			return nil, fmt.Errorf("--op-log: %w", err)
		}
		r.files = append(r.files, f)
		r.Log = optrace.NewLog(f, buffer)
	}
	if n := c.Int("ops-ring"); n > 0 && c.String("http") != "" {
		r.Ring = optrace.NewRing(n)
	}
	return r, nil
}

// close finishes the trace and the log (their pending records and the trace's closing
// brackets) and closes the files. A writer still stuck when ctx ends (a FIFO nobody reads,
// a stalled NFS) is given up on: its records are counted as dropped and the file closed.
func (r *opRecorder) close(ctx context.Context) error {
	var errs []error
	if r.Trace != nil {
		errs = append(errs, r.Trace.CloseContext(ctx))
	}
	if r.Log != nil {
		errs = append(errs, r.Log.CloseContext(ctx))
	}
	for _, f := range r.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// writeReport prints what the trace and the log wrote and dropped.
func (r *opRecorder) writeReport(w io.Writer) {
	st := r.Stats()
	for _, s := range []struct {
		name string
		st   *optrace.SinkStats
	}{{"trace", st.Trace}, {"op log", st.Log}} {
		if s.st == nil {
			continue
		}
		fmt.Fprintf(w, "sstemu: %s: %d frames written (%d bytes), %d dropped", s.name, s.st.Items, s.st.Bytes, s.st.Dropped)
		if s.st.Error != "" {
			fmt.Fprintf(w, ", write error: %s", s.st.Error)
		}
		fmt.Fprintln(w)
	}
}

// withOps serves the ring's records at /ops (JSON: total, size, ops oldest first) and
// everything else with next.
func withOps(next http.Handler, ring *optrace.Ring) http.Handler {
	if ring == nil {
		return next
	}
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("/ops", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(ring.AppendJSON(nil), '\n'))
	})
	return mux
}
