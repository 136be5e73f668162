package main

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/stack"
	"github.com/sstemu/sstemu/pkg/tcpfront"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// snapshot is the process's and every layer's statistics at one moment, as /stats serves
// it (snake_case keys throughout) and /metrics reads it.
type snapshot struct {
	Process     processStats      `json:"process"`
	GEMMKernels linalg.KernelInfo `json:"gemm_kernels"`
	stack.Stats
}

func takeSnapshot(st *stack.Stack) snapshot {
	return snapshot{Process: readProcessStats(), GEMMKernels: linalg.Kernels(), Stats: st.Stats()}
}

// processStats are the process-wide numbers a leak check compares before and after.
type processStats struct {
	Goroutines     int    `json:"goroutines"`
	HeapAllocBytes uint64 `json:"heap_alloc_bytes"`
	HeapInuseBytes uint64 `json:"heap_inuse_bytes"`
	SysBytes       uint64 `json:"sys_bytes"`
}

func readProcessStats() processStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return processStats{Goroutines: runtime.NumGoroutine(), HeapAllocBytes: m.HeapAlloc, HeapInuseBytes: m.HeapInuse, SysBytes: m.Sys}
}

// statsHandler serves /stats (the snapshot as JSON) and /metrics (Prometheus text).
func statsHandler(st *stack.Stack) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(takeSnapshot(st))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(newMetricsRegistry(func() snapshot { return takeSnapshot(st) }), promhttp.HandlerOpts{}))
	return mux
}

// newMetricsRegistry is the registry /metrics serves: the layers' statistics, read from
// snap at every scrape, plus the standard Go runtime, process and build collectors.
func newMetricsRegistry(snap func() snapshot) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStackCollector(snap),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	return reg
}

// metricNamespace prefixes every sstemu metric; the subsystem is the layer's package, as
// the layer key of the logs.
const metricNamespace = "sstemu"

// metric is one family of the stack collector: its description and how to read its
// samples from a snapshot.
type metric struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	collect func(s *snapshot, emit func(v float64, labels ...string))
}

// stackCollector exports the layers' Stats snapshots as Prometheus metrics at scrape
// time: counters (_total) for monotonic counts, gauges for levels, one family per
// quantity with labels for the device index, the op, the error kind or the untimed cause.
// Feature bits, event timestamps and other fields that are no quantity stay in /stats.
type stackCollector struct {
	snap    func() snapshot
	metrics []metric
}

// newStackCollector describes every family; snap is called once per scrape.
func newStackCollector(snap func() snapshot) *stackCollector {
	c := &stackCollector{snap: snap}
	add := func(subsystem, name, help string, kind prometheus.ValueType, labels []string, collect func(s *snapshot, emit func(v float64, labels ...string))) {
		desc := prometheus.NewDesc(prometheus.BuildFQName(metricNamespace, subsystem, name), help, labels, nil)
		c.metrics = append(c.metrics, metric{desc: desc, kind: kind, collect: collect})
	}
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	device := []string{"device"}

	// Layer 1: the DeviceGEMM front end.
	add("tcpfront", "ops_total", "Ops executed and answered by the DeviceGEMM front end, by op type.", counter, []string{"op"},
		func(s *snapshot, emit func(float64, ...string)) {
			emit(float64(s.Front.OpsGEMM), "gemm")
			emit(float64(s.Front.OpsConv), "conv")
			emit(float64(s.Front.OpsMatmul), "matmul")
		})
	add("tcpfront", "received_bytes_total", "Bytes of fully decoded request frames.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.BytesIn)) })
	add("tcpfront", "sent_bytes_total", "Bytes of responses sent (counted as each write starts).", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.BytesOut)) })
	add("tcpfront", "connection_errors_total", "Connections closed or refused for a bad request or a failure, by error kind.", counter, []string{"kind"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, k := range tcpfront.AllErrorKinds() {
				emit(float64(s.Front.Errors[k]), k.String())
			}
		})
	add("tcpfront", "accepted_connections_total", "Client connections accepted, including those refused at once.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.TotalConns)) })
	add("tcpfront", "open_connections", "Client connections open now.", gauge, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.ActiveConns)) })
	add("tcpfront", "ops_in_flight", "Ops being executed or answered now.", gauge, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.OpsInFlight)) })
	add("tcpfront", "timing_trailers_total", "Op answers sent with the timing trailer (\"timing\": true).", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.Trailers)) })
	add("tcpfront", "time_entries_total", "TIME entries answered (shapes timed without tensors).", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.Front.TimeEntries)) })
	add("tcpfront", "record_frames_dropped_total", "Frames of timing records the trace or the op log dropped because their writer fell behind, by sink.", counter, []string{"sink"},
		func(s *snapshot, emit func(float64, ...string)) {
			if r := s.Front.Records.Trace; r != nil {
				emit(float64(r.Dropped), "trace")
			}
			if r := s.Front.Records.Log; r != nil {
				emit(float64(r.Dropped), "op_log")
			}
		})

	// Layer 2: the device server.
	add("deviceserver", "ops_total", "Ops computed by the device server, by op type.", counter, []string{"op"},
		func(s *snapshot, emit func(float64, ...string)) {
			emit(float64(s.DeviceServer.GEMM), "gemm")
			emit(float64(s.DeviceServer.Conv), "conv")
			emit(float64(s.DeviceServer.Matmul), "matmul")
		})
	add("deviceserver", "timed_ops_total", "Ops the device timed.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.Timed)) })
	add("deviceserver", "untimed_ops_total", "Ops computed but not timed, by cause (see deviceserver.UntimedCause).", counter, []string{"cause"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, cause := range deviceserver.UntimedCauses() {
				emit(float64(s.DeviceServer.UntimedByCause[cause]), cause.String())
			}
		})
	add("deviceserver", "invalid_ops_total", "Ops rejected as invalid before computing.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.Failed)) })
	add("deviceserver", "timing_requests_total", "Timing requests the devices answered, whatever the status.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.TimingRequest)) })
	add("deviceserver", "compute_timing_requests_total", "Timing requests sent as COMPUTE of 2·M·N·K units to devices that do not know GEMM.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.ComputeTimingRequests)) })
	add("deviceserver", "compute_fallbacks_total", "Switches of a device from GEMM to COMPUTE timing requests.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.ComputeFallbacks)) })
	add("deviceserver", "simulated_cycles_total", "Simulated device cycles over all timed ops.", counter, nil,
		func(s *snapshot, emit func(float64, ...string)) { emit(float64(s.DeviceServer.Cycles)) })

	// Layer 3: the /dev/sstN character devices.
	perChar := func(name, help string, kind prometheus.ValueType, v func(d *sstdev.Stats) float64) {
		add("sstdev", name, help, kind, device, func(s *snapshot, emit func(float64, ...string)) {
			for i := range s.CharDevices {
				emit(v(&s.CharDevices[i]), strconv.Itoa(i))
			}
		})
	}
	perChar("opens_total", "Successful opens of the device file.", counter, func(d *sstdev.Stats) float64 { return float64(d.Opens) })
	perChar("open_files", "Files of the device open now.", gauge, func(d *sstdev.Stats) float64 { return float64(d.OpenFiles) })
	perChar("writes_total", "Requests written to the device.", counter, func(d *sstdev.Stats) float64 { return float64(d.Writes) })
	perChar("answers_total", "Answers stored for a writer.", counter, func(d *sstdev.Stats) float64 { return float64(d.Answers) })
	perChar("reads_total", "Responses read out of the device file.", counter, func(d *sstdev.Stats) float64 { return float64(d.Reads) })
	add("sstdev", "failed_writes_total", "Writes that failed after they were accepted, by reason: the driver's timeout (ETIMEDOUT), the file closed meanwhile (EINTR), a device failure (EIO, ENODEV).",
		counter, []string{"device", "reason"}, func(s *snapshot, emit func(float64, ...string)) {
			for i, d := range s.CharDevices {
				dev := strconv.Itoa(i)
				emit(float64(d.Timeouts), dev, "timeout")
				emit(float64(d.Interrupted), dev, "interrupted")
				emit(float64(d.Failed), dev, "device_error")
			}
		})
	perChar("late_answers_total", "Answers that arrived after their writer gave up.", counter, func(d *sstdev.Stats) float64 { return float64(d.LateAnswers) })
	perChar("slot_waits_total", "Writes that found every request slot busy and waited.", counter, func(d *sstdev.Stats) float64 { return float64(d.SlotWaits) })
	perChar("free_slots", "Request slots free now.", gauge, func(d *sstdev.Stats) float64 { return float64(d.FreeSlots) })
	perChar("requests_in_flight", "Requests the device holds now.", gauge, func(d *sstdev.Stats) float64 { return float64(d.InFlight) })
	perChar("abandoned_requests", "Requests in flight whose writer gave up.", gauge, func(d *sstdev.Stats) float64 { return float64(d.Abandoned) })
	perChar("interrupts_total", "Used-buffer notifications received from the virtio device.", counter, func(d *sstdev.Stats) float64 { return float64(d.Interrupts) })
	perChar("notifies_total", "Available-buffer notifications sent to the virtio device.", counter, func(d *sstdev.Stats) float64 { return float64(d.Notifies) })
	perChar("resets_total", "Resets of the virtio device by the driver.", counter, func(d *sstdev.Stats) float64 { return float64(d.Resets) })
	perChar("events_total", "SSTEvents received from the virtio device.", counter, func(d *sstdev.Stats) float64 { return float64(d.Events) })
	perChar("link_up", "1 if the latest link event said the device reaches the SST component, else 0.", gauge, func(d *sstdev.Stats) float64 { return bool01(d.LinkUp) })
	perChar("ready", "1 if the device file can be opened, else 0.", gauge, func(d *sstdev.Stats) float64 { return bool01(d.Ready) })

	// Layer 4: the virtio-sst devices.
	perVirtio := func(name, help string, kind prometheus.ValueType, v func(d *virtiodev.Stats) float64) {
		add("virtiodev", name, help, kind, device, func(s *snapshot, emit func(float64, ...string)) {
			for i := range s.Virtio {
				emit(v(&s.Virtio[i]), strconv.Itoa(i))
			}
		})
	}
	perVirtio("requests_total", "Chains popped from the request queue, good or bad.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Requests) })
	perVirtio("responses_total", "Chains completed with a whole response, of any status.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Responses) })
	perVirtio("events_total", "SSTEvents delivered on the event queue.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Events) })
	perVirtio("driver_errors_total", "Faults found in what the driver gave the device: short buffers, malformed chains.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Errors) })
	perVirtio("forwarded_requests_total", "Requests forwarded to the SST component.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Forwarded) })
	add("virtiodev", "failed_requests_total", "Requests the device answered itself with a failure status: no_device (no link to the SST component), timeout (the link was dropped for not answering), invalid (unknown request type).",
		counter, []string{"device", "status"}, func(s *snapshot, emit func(float64, ...string)) {
			for i, d := range s.Virtio {
				dev := strconv.Itoa(i)
				emit(float64(d.NoDevice), dev, "no_device")
				emit(float64(d.Timeouts), dev, "timeout")
				emit(float64(d.Invalid), dev, "invalid")
			}
		})
	perVirtio("stale_answers_total", "Answers of the SST component discarded because the driver reset the device meanwhile.", counter, func(d *virtiodev.Stats) float64 { return float64(d.Stale) })
	perVirtio("dropped_events_total", "Events lost because the event backlog was full.", counter, func(d *virtiodev.Stats) float64 { return float64(d.EventsDropped) })
	perVirtio("link_ups_total", "Connections made to the SST component.", counter, func(d *virtiodev.Stats) float64 { return float64(d.LinkUps) })
	perVirtio("link_downs_total", "Connections to the SST component lost.", counter, func(d *virtiodev.Stats) float64 { return float64(d.LinkDowns) })
	perVirtio("dial_failures_total", "Failed attempts to connect to the SST component.", counter, func(d *virtiodev.Stats) float64 { return float64(d.DialFailures) })
	add("virtiodev", "link_drops_total", "Connections the device dropped itself, by reason: timeout (no answer in time), protocol_error (an answer nobody asked for).",
		counter, []string{"device", "reason"}, func(s *snapshot, emit func(float64, ...string)) {
			for i, d := range s.Virtio {
				dev := strconv.Itoa(i)
				emit(float64(d.LinkTimeouts), dev, "timeout")
				emit(float64(d.LinkProtocolErrors), dev, "protocol_error")
			}
		})
	perVirtio("link_up", "1 if the device is connected to the SST component now, else 0.", gauge, func(d *virtiodev.Stats) float64 { return bool01(d.LinkUp) })
	perVirtio("requests_in_flight", "Requests sent to the SST component and not yet answered.", gauge, func(d *virtiodev.Stats) float64 { return float64(d.InFlight) })

	// Layer 5: the in-process SST component (absent with --sst-socket or --device).
	sst := func(name, help string, kind prometheus.ValueType, v func(c *sstcomponent.Stats) float64) {
		add("sstcomponent", name, help, kind, nil, func(s *snapshot, emit func(float64, ...string)) {
			if s.SST != nil {
				emit(v(s.SST))
			}
		})
	}
	add("sstcomponent", "requests_total", "Whole requests received by the SST component, by request type (unknown: an undefined type).", counter, []string{"type"},
		func(s *snapshot, emit func(float64, ...string)) {
			if s.SST == nil {
				return
			}
			for t, n := range s.SST.Requests {
				emit(float64(n), strings.ToLower(protocol.RequestType(t).String()))
			}
			emit(float64(s.SST.Unknown), "unknown")
		})
	sst("invalid_responses_total", "Requests answered with status INVALID.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Invalid) })
	sst("truncated_requests_total", "Connections that ended in the middle of a request.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Truncated) })
	sst("connections_total", "Connections served, including open ones.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Connections) })
	sst("compute_cycles_total", "Cycles of the COMPUTE requests answered OK.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Compute.Sum) })
	add("sstcomponent", "gemms_total", "GEMMs simulated by the performance model, by the resource that bounded them.", counter, []string{"bound"},
		func(s *snapshot, emit func(float64, ...string)) {
			if s.SST != nil {
				emit(float64(s.SST.GEMM.ComputeBound), "compute")
				emit(float64(s.SST.GEMM.MemoryBound), "memory")
			}
		})
	sst("gemm_cycles_total", "Cycles of the simulated GEMMs.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.GEMM.Cycles.Sum) })
	sst("gemm_compute_cycles_total", "Compute-bound cycles of the simulated GEMMs.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.GEMM.ComputeCycles.Sum) })
	sst("gemm_memory_cycles_total", "Memory-bound cycles of the simulated GEMMs.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.GEMM.MemoryCycles.Sum) })
	sst("gemm_memory_bytes_total", "Bytes the simulated GEMMs move to and from memory.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.GEMM.MemoryBytes.Sum) })
	sst("gemm_flop_total", "Floating-point operations of the simulated GEMMs.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.GEMM.FLOPs.Sum) })
	sst("read_bytes_total", "Bytes of the READ requests answered OK.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Read.Sum) })
	sst("written_bytes_total", "Bytes of the WRITE requests answered OK.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.Write.Sum) })
	sst("simulated_cycles_total", "The component's simulated clock, in cycles.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.SimCycles) })
	sst("simulated_seconds_total", "The component's simulated clock, in simulated seconds at its clock frequency.", counter, func(c *sstcomponent.Stats) float64 { return float64(c.SimTimePS) * 1e-12 })
	sst("memory_resident_bytes", "Device memory the component has allocated.", gauge, func(c *sstcomponent.Stats) float64 { return float64(c.MemoryResident) })
	add("sstcomponent", "model_info", "The performance model the component runs, as the label model; the value is 1.", gauge, []string{"model"},
		func(s *snapshot, emit func(float64, ...string)) {
			if s.SST != nil {
				emit(1, s.SST.Model)
			}
		})
	return c
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe sends every family's description: the collector is checked.
func (c *stackCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect reads one snapshot and sends every family's samples.
func (c *stackCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	for _, m := range c.metrics {
		m.collect(&s, func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, v, labels...)
		})
	}
}
