package main

import (
	"encoding/json"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sstemu/sstemu/pkg/stack"
)

// snapshot is the process's and every layer's statistics at one moment, as /stats
// serves it.
type snapshot struct {
	Process processStats `json:"process"`
	stack.Stats
}

func takeSnapshot(st *stack.Stack) snapshot {
	return snapshot{Process: readProcessStats(), Stats: st.Stats()}
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

// statsHandler serves /stats (the snapshot as JSON) and /metrics (the same numbers in
// Prometheus text format).
func statsHandler(st *stack.Stack) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(snapshotCollector{st})
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(takeSnapshot(st))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// snapshotCollector exposes every number of the snapshot as a gauge named after its path,
// e.g. sstemu_virtio_forwarded{index="0"}, so a statistic added to any layer's Stats shows
// up in /metrics without a second list to maintain. It is an unchecked collector: the
// metric set follows the snapshot.
type snapshotCollector struct{ st *stack.Stack }

// Describe sends nothing, which makes the collector unchecked.
func (snapshotCollector) Describe(chan<- *prometheus.Desc) {}

// Collect flattens the snapshot's JSON form into gauges.
func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	raw, err := json.Marshal(takeSnapshot(c.st))
	if err != nil {
		return
	}
	var tree any
	if json.Unmarshal(raw, &tree) != nil {
		return
	}
	flatten("sstemu", "", tree, func(name, index string, v float64) {
		labels := []string{}
		values := []string{}
		if index != "" {
			labels, values = []string{"index"}, []string{index}
		}
		desc := prometheus.NewDesc(name, "sstemu statistic "+name, labels, nil)
		if m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, v, values...); err == nil {
			ch <- m
		}
	})
}

// flatten walks a decoded JSON value, calling emit for every number and boolean with its
// metric name; the index of the outermost array (the device number) becomes a label.
func flatten(name, index string, v any, emit func(name, index string, v float64)) {
	switch t := v.(type) {
	case float64:
		emit(name, index, t)
	case bool:
		if t {
			emit(name, index, 1)
		} else {
			emit(name, index, 0)
		}
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			flatten(name+"_"+metricName(k), index, t[k], emit)
		}
	case []any:
		for i, e := range t {
			if index == "" {
				flatten(name, strconv.Itoa(i), e, emit)
			} else {
				flatten(name+"_"+strconv.Itoa(i), index, e, emit)
			}
		}
	}
}

// metricName turns a JSON key such as "OpsInFlight" or "ops_gemm" into "ops_in_flight".
func metricName(k string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range k {
		switch {
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
			prevLower = true
		default:
			b.WriteByte('_')
			prevLower = false
		}
	}
	return b.String()
}
