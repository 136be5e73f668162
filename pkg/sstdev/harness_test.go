package sstdev_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// The tests build requests and read responses with the byte offsets of docs/sst-protocol.md,
// independently of pkg/protocol's codec.

var le = binary.LittleEndian

const (
	reqSize  = 4104
	respSize = 4112

	offType, offRequestID, offUserData, offReqPayload = 0, 8, 16, 24
	offStatus, offResult, offRespPayload              = 0, 24, 32

	typeEcho, typeCompute, typeReset, typeGEMM = 1, 2, 5, 8
	statusOK                                   = 0

	eventReset = 3 // sstemu's SSTEvent type for a served RESET request

	// fakeMul and fakeAdd define the fake layer 5's COMPUTE answer: result =
	// compute_units·fakeMul + fakeAdd.
	fakeMul, fakeAdd = 3, 1
)

// waitLimit bounds every wait in the tests, far above any legitimate latency.
const waitLimit = 10 * time.Second

// request builds an encoded SSTRequest.
func request(typ uint32, id, user uint64) []byte {
	b := make([]byte, reqSize)
	le.PutUint32(b[offType:], typ)
	le.PutUint64(b[offRequestID:], id)
	le.PutUint64(b[offUserData:], user)
	return b
}

// computeRequest is a COMPUTE of units compute units (latency model 0).
func computeRequest(user, units uint64) []byte {
	b := request(typeCompute, 0xDEAD, user)
	le.PutUint64(b[offReqPayload:], units)
	return b
}

// gemmRequest is a GEMM of C[m,n] = A[m,k]·B[k,n] with dtype_size bytes per element.
func gemmRequest(user uint64, m, n, k, dtype uint32) []byte {
	b := request(typeGEMM, 0, user)
	le.PutUint32(b[24:], m)
	le.PutUint32(b[28:], n)
	le.PutUint32(b[32:], k)
	le.PutUint32(b[36:], dtype)
	return b
}

// response is a decoded SSTResponse header.
type response struct {
	status          uint32
	requestID, user uint64
	result          uint64
	payload         []byte
}

func parseResponse(b []byte) response {
	return response{
		status:    le.Uint32(b[offStatus:]),
		requestID: le.Uint64(b[8:]),
		user:      le.Uint64(b[16:]),
		result:    le.Uint64(b[offResult:]),
		payload:   b[offRespPayload:respSize],
	}
}

// fakeL5 is a scripted SST component: it answers every request OK in order, COMPUTE with
// result compute_units·fakeMul + fakeAdd, and echoes the first 64 payload bytes. While a
// gate is set, each answer waits for the gate to open.
type fakeL5 struct {
	mu     sync.Mutex
	seen   []uint64 // request_id of every request received, in order
	gate   chan struct{}
	served atomic.Int64
}

// hold makes every later answer wait until release.
func (f *fakeL5) hold() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

// release lets all held and later answers through.
func (f *fakeL5) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

func (f *fakeL5) seenIDs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.seen...)
}

func (f *fakeL5) serve(ctx context.Context, conn io.ReadWriteCloser) error {
	in := make([]byte, reqSize)
	out := make([]byte, respSize)
	for {
		if _, err := io.ReadFull(conn, in); err != nil {
			return err
		}
		f.mu.Lock()
		f.seen = append(f.seen, le.Uint64(in[offRequestID:]))
		gate := f.gate
		f.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		clear(out)
		copy(out[8:24], in[8:24])
		if le.Uint32(in[offType:]) == typeCompute {
			le.PutUint64(out[offResult:], le.Uint64(in[offReqPayload:])*fakeMul+fakeAdd)
		}
		copy(out[offRespPayload:offRespPayload+64], in[offReqPayload:offReqPayload+64])
		if _, err := conn.Write(out); err != nil {
			return err
		}
		f.served.Add(1)
	}
}

// rig is one emulated device over a virtio-sst backend and a layer 5.
type rig struct {
	dev     *sstdev.Device
	backend *virtiodev.Device
}

// newBackend returns a virtio-sst device connected in-process to serve.
func newBackend(t testing.TB, serve func(context.Context, io.ReadWriteCloser) error) *virtiodev.Device {
	t.Helper()
	b, err := virtiodev.New(virtiodev.Config{
		Dialer:       virtiodev.PipeDialer(serve),
		ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	return b
}

// newRig creates /dev/sst<cfg.Index> on a backend served by serve and waits until the
// device reports (through its event queue) that the link to layer 5 is up.
func newRig(t testing.TB, cfg sstdev.Config, serve func(context.Context, io.ReadWriteCloser) error) *rig {
	t.Helper()
	b := newBackend(t, serve)
	cfg.Backend = b
	d, err := sstdev.New(cfg)
	if err != nil {
		_ = b.Close()
		require.NoError(t, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	waitLinkUp(t, d)
	return &rig{dev: d, backend: b}
}

func (r *rig) open(t testing.TB) *sstdev.File {
	t.Helper()
	f, err := r.dev.Open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// waitLinkUp waits, at most waitLimit, for the device's LINK_UP event.
func waitLinkUp(t testing.TB, d *sstdev.Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, d.WaitLinkUp(ctx))
}

// eventually polls cond until it holds or fails the test.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// roundTrip writes req and reads the response, failing the test on any error.
func roundTrip(t testing.TB, f *sstdev.File, req []byte) response {
	t.Helper()
	n, err := f.Write(req)
	require.NoError(t, err)
	require.Equal(t, reqSize, n)
	buf := make([]byte, respSize)
	n, err = f.Read(buf)
	require.NoError(t, err)
	require.Equal(t, respSize, n)
	return parseResponse(buf)
}

// requireErrno checks that err is what *os.File returns for errno from op on path.
func requireErrno(t testing.TB, err error, op, path string, errno syscall.Errno) {
	t.Helper()
	require.Error(t, err)
	var pe *os.PathError
	require.True(t, errors.As(err, &pe), "error %T %v is not an *os.PathError", err, err)
	require.Equal(t, op, pe.Op)
	require.Equal(t, path, pe.Path)
	require.ErrorIs(t, err, errno)
	var got syscall.Errno
	require.True(t, errors.As(err, &got))
	require.Equal(t, errno, got)
}

// result is one finished Write of a goroutine.
type result struct {
	n   int
	err error
}

// writeAsync writes req on f in a new goroutine; the channel receives the outcome.
func writeAsync(f *sstdev.File, req []byte) <-chan result {
	ch := make(chan result, 1)
	go func() {
		n, err := f.Write(req)
		ch <- result{n, err}
	}()
	return ch
}

func receive(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatal("write did not return")
		return result{}
	}
}
