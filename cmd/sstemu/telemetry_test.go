package main

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/stack"
	"github.com/sstemu/sstemu/pkg/tcpfront"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// fakeSnapshot is a snapshot of two devices and an in-process component, every number
// distinct so that a sample read from the wrong field shows.
func fakeSnapshot() snapshot {
	errs := map[tcpfront.ErrorKind]uint64{}
	for i, k := range tcpfront.AllErrorKinds() {
		errs[k] = uint64(100 + i)
	}
	untimed := map[deviceserver.UntimedCause]uint64{}
	for i, c := range deviceserver.UntimedCauses() {
		untimed[c] = uint64(200 + i)
	}
	sst := &sstcomponent.Stats{Total: 44, Unknown: 3, Invalid: 4, Connections: 2, SimCycles: 5000, SimTimePS: 2500000, Model: "roofline", MemoryResident: 4096}
	sst.Requests[protocol.ReqGEMM] = 41
	sst.GEMM.Cycles = sstcomponent.Accumulator{Count: 41, Sum: 5000}
	sst.GEMM.ComputeBound, sst.GEMM.MemoryBound = 40, 1
	return snapshot{Stats: stack.Stats{
		Front: tcpfront.Stats{Ops: 6, OpsGEMM: 3, OpsConv: 2, OpsMatmul: 1, BytesIn: 1000, BytesOut: 500, Errors: errs, ActiveConns: 2, TotalConns: 7, OpsInFlight: 1},
		DeviceServer: deviceserver.Stats{Ops: 6, GEMM: 3, Conv: 2, Matmul: 1, Timed: 5, Untimed: 1, UntimedByCause: untimed,
			Failed: 1, TimingRequest: 9, Cycles: 5000},
		CharDevices: []sstdev.Stats{{Writes: 5, Timeouts: 1, LinkUp: true, Ready: true, FreeSlots: 64, Features: 0x130000000}, {Writes: 4, FreeSlots: 63}},
		Virtio:      []virtiodev.Stats{{Requests: 5, NoDevice: 2, LinkUp: true}, {Requests: 4, LinkTimeouts: 1}},
		SST:         sst,
	}}
}

func gatherFake(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := newMetricsRegistry(func() snapshot { return fakeSnapshot() }).Gather()
	require.NoError(t, err)
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return byName
}

// sample returns the value of the sample of family name with the given label pairs.
func sample(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "family %s", name)
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := len(got) == len(labels)/2
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// The whole exposition passes promlint (what `promtool check metrics` runs), sstemu's own
// families have real help texts, and counters are named _total.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	mfs := gatherFake(t)
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		list = append(list, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(list).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)

	counters := 0
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "sstemu_") {
			continue
		}
		assert.NotContains(t, mf.GetHelp(), "sstemu statistic", name)
		assert.Contains(t, []dto.MetricType{dto.MetricType_COUNTER, dto.MetricType_GAUGE}, mf.GetType(), name)
		if mf.GetType() == dto.MetricType_COUNTER {
			counters++
			assert.True(t, strings.HasSuffix(name, "_total"), "counter %s", name)
		} else {
			assert.False(t, strings.HasSuffix(name, "_total"), "gauge %s", name)
		}
		for _, bad := range []string{"features", "timestamp", "last_event"} {
			assert.NotContains(t, name, bad, "no bit fields or timestamps")
		}
	}
	assert.Greater(t, counters, 30)
}

func TestMetricsValues(t *testing.T) {
	mfs := gatherFake(t)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sstemu_tcpfront_ops_total", []string{"op", "conv"}, 2},
		{"sstemu_tcpfront_connection_errors_total", []string{"kind", tcpfront.AllErrorKinds()[0].String()}, 100},
		{"sstemu_tcpfront_open_connections", nil, 2},
		{"sstemu_tcpfront_accepted_connections_total", nil, 7},
		{"sstemu_deviceserver_untimed_ops_total", []string{"cause", "no_device"}, 200},
		{"sstemu_deviceserver_untimed_ops_total", []string{"cause", "invalid_shape"}, 208},
		{"sstemu_deviceserver_timing_requests_total", nil, 9},
		{"sstemu_sstdev_writes_total", []string{"device", "1"}, 4},
		{"sstemu_sstdev_failed_writes_total", []string{"device", "0", "reason", "timeout"}, 1},
		{"sstemu_sstdev_free_slots", []string{"device", "1"}, 63},
		{"sstemu_sstdev_link_up", []string{"device", "0"}, 1},
		{"sstemu_sstdev_link_up", []string{"device", "1"}, 0},
		{"sstemu_virtiodev_failed_requests_total", []string{"device", "0", "status", "no_device"}, 2},
		{"sstemu_virtiodev_link_drops_total", []string{"device", "1", "reason", "timeout"}, 1},
		{"sstemu_sstcomponent_requests_total", []string{"type", "gemm"}, 41},
		{"sstemu_sstcomponent_requests_total", []string{"type", "unknown"}, 3},
		{"sstemu_sstcomponent_gemms_total", []string{"bound", "memory"}, 1},
		{"sstemu_sstcomponent_gemm_cycles_total", nil, 5000},
		{"sstemu_sstcomponent_simulated_seconds_total", nil, 2.5e-6},
		{"sstemu_sstcomponent_memory_resident_bytes", nil, 4096},
		{"sstemu_sstcomponent_model_info", []string{"model", "roofline"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name+strings.Join(tt.labels, "_"), func(t *testing.T) {
			assert.InDelta(t, tt.want, sample(t, mfs, tt.name, tt.labels...), 1e-18)
		})
	}
}

// Without an in-process component (--sst-socket, --device) its families are absent, not 0.
func TestMetricsWithoutComponent(t *testing.T) {
	s := fakeSnapshot()
	s.SST, s.CharDevices, s.Virtio = nil, nil, nil
	mfs, err := newMetricsRegistry(func() snapshot { return s }).Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.False(t, strings.HasPrefix(mf.GetName(), "sstemu_sstcomponent_"), mf.GetName())
		assert.False(t, strings.HasPrefix(mf.GetName(), "sstemu_sstdev_"), mf.GetName())
	}
}

// Every key of /stats, at any depth, is snake_case.
func TestStatsKeysAreSnakeCase(t *testing.T) {
	raw, err := json.Marshal(fakeSnapshot())
	require.NoError(t, err)
	var tree any
	require.NoError(t, json.Unmarshal(raw, &tree))
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var bad []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				if !snake.MatchString(k) {
					bad = append(bad, path+"."+k)
				}
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range t {
				walk(path+"[]", e)
			}
		}
	}
	walk("", tree)
	sort.Strings(bad)
	assert.Empty(t, bad)
}
