package stack_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/syncbuffer"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
	"github.com/sstemu/sstemu/pkg/stack"
)

// waitLimit bounds every wait of these tests.
const waitLimit = 10 * time.Second

// tutorial is the tutorial's A100-like roofline: 64 FP32 FLOP per cycle, 900 GB/s at
// 1.41 GHz. Its 4×16×8 GEMM costs max(1024/64, floor(896/(900/1.41))) = 16 cycles.
var tutorial = perfmodel.Params{FLOPsPerCycle: 64, BandwidthGBps: 900, ClockGHz: 1.41}

func build(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	st, err := stack.Build(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func ready(t *testing.T, st *stack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, st.Ready(ctx))
}

// TestInProcess builds the whole stack with two devices and times the tutorial's GEMM on
// each of them through layers 2–5.
func TestInProcess(t *testing.T) {
	var logs syncbuffer.Buffer
	st := build(t, stack.Options{Devices: 2, Model: perfmodel.KindRoofline, Params: tutorial,
		Logger: zerolog.New(&logs)})
	ready(t, st) // Build waited already: returns at once
	require.NotNil(t, st.Component())
	require.Len(t, st.Virtio(), 2)
	require.Equal(t, 2, st.Devices().Len())

	for range 2 { // round-robin: one op per device
		tm := st.Server().Time(context.Background(), []linalg.GEMMShape{{M: 4, N: 16, K: 8}})
		require.True(t, tm.Timed)
		assert.Equal(t, uint64(16), tm.Cycles)
	}
	s := st.Stats()
	require.Len(t, s.CharDevices, 2)
	require.Len(t, s.Virtio, 2)
	require.NotNil(t, s.SST)
	for i := range 2 {
		assert.True(t, s.CharDevices[i].LinkUp)
		assert.Equal(t, int64(1), s.CharDevices[i].Answers, "device %d", i)
		assert.Equal(t, uint64(1), s.Virtio[i].Forwarded, "device %d", i)
	}
	assert.Equal(t, uint64(2), s.SST.Requests[protocol.ReqGEMM])

	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is idempotent")
	var report bytes.Buffer
	require.NoError(t, st.WriteReport(&report))
	for _, want := range []string{"/dev/sst0: 1 writes, 1 answers", "/dev/sst1: 1 writes",
		"virtio-sst 1: 1 requests, 1 responses"} {
		assert.Contains(t, report.String(), want)
	}
	for _, layer := range []string{"sstcomponent", "virtiodev", "sstdev"} {
		assert.Contains(t, logs.String(), `"layer":"`+layer+`"`)
	}
}

// TestExternalSST builds layers 1–4 against an SST component on a Unix socket.
func TestExternalSST(t *testing.T) {
	comp, err := sstcomponent.New(sstcomponent.Config{Model: perfmodel.KindRoofline, Params: tutorial})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "sst.sock")
	l, err := sstcomponent.Listen(path)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- comp.Serve(l) }()

	st := build(t, stack.Options{SSTSocket: path})
	ready(t, st)
	assert.Nil(t, st.Component())
	tm := st.Server().Time(context.Background(), []linalg.GEMMShape{{M: 4, N: 16, K: 8}})
	require.True(t, tm.Timed)
	assert.Equal(t, uint64(16), tm.Cycles)
	assert.Nil(t, st.Stats().SST)

	require.NoError(t, st.Close())
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, comp.Shutdown(ctx))
	<-served
}

// TestLinkWait: with no SST on the socket, Build waits LinkWait, warns and returns a
// stack that serves ops untimed.
func TestLinkWait(t *testing.T) {
	var logs syncbuffer.Buffer
	path := filepath.Join(t.TempDir(), "nobody.sock")
	st := build(t, stack.Options{SSTSocket: path, Devices: 3, LinkWait: 30 * time.Millisecond, Logger: zerolog.New(&logs)})
	assert.Contains(t, logs.String(), `"devices_down":3`)
	assert.Contains(t, logs.String(), "layer 5 is not reachable yet")
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, st.Ready(short), context.DeadlineExceeded)
	assert.False(t, st.Server().Time(context.Background(), []linalg.GEMMShape{{M: 1, N: 1, K: 1}}).Timed)
}

// TestBuildCancelled: a context ended during the wait (a SIGTERM at start-up) ends the
// wait without a warning.
func TestBuildCancelled(t *testing.T) {
	var logs syncbuffer.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := stack.Build(ctx, stack.Options{SSTSocket: filepath.Join(t.TempDir(), "nobody.sock"), Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	assert.NotContains(t, logs.String(), "not reachable")
}

// TestDeviceFile: a device file replaces layers 3–5; an op on a missing file is untimed.
func TestDeviceFile(t *testing.T) {
	st := build(t, stack.Options{DeviceFile: filepath.Join(t.TempDir(), "sst0")})
	assert.Nil(t, st.Devices())
	assert.Empty(t, st.Virtio())
	assert.Nil(t, st.Component())
	require.NoError(t, st.Ready(context.Background()))
	assert.False(t, st.Server().Time(context.Background(), []linalg.GEMMShape{{M: 1, N: 1, K: 1}}).Timed)
	s := st.Stats()
	assert.Nil(t, s.CharDevices)
	assert.Nil(t, s.SST)
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		opts stack.Options
		want string
	}{
		{"device file and socket", stack.Options{DeviceFile: "/dev/sst0", SSTSocket: "/tmp/s"}, "exclude each other"},
		{"too many devices", stack.Options{Devices: 17}, "17 devices"},
		{"negative devices", stack.Options{Devices: -1}, "-1 devices"},
		{"bad model", stack.Options{Model: "abacus"}, "abacus"},
		{"negative device timeout", stack.Options{DeviceTimeout: -time.Second}, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stack.Build(context.Background(), tt.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestFront serves layer 1 of a built stack on a listener and shuts it down.
func TestFront(t *testing.T) {
	st := build(t, stack.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- st.Front().Serve(ln) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, st.Front().Shutdown(ctx))
	require.Error(t, <-served)
	require.NoError(t, st.Close())
	var report bytes.Buffer
	require.NoError(t, st.WriteReport(&report))
	assert.True(t, strings.HasPrefix(report.String(), "sstemu: front end: 0 ops"), report.String())
}
