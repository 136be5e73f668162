package tcpfront

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
)

func TestServerHandFrame(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, nil)
	c := ts.dial(t)
	for range 3 {
		_, err := c.Write(handGEMMFrame)
		require.NoError(t, err)
		got := make([]byte, len(handGEMMResponse))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, handGEMMResponse, got)
	}
	st := ts.Stats()
	assert.Equal(t, uint64(3), st.Ops)
	assert.Equal(t, uint64(3), st.OpsGEMM)
	assert.Equal(t, uint64(3*len(handGEMMFrame)), st.BytesIn)
	assert.Equal(t, uint64(3*len(handGEMMResponse)), st.BytesOut)
	assert.Equal(t, int64(1), st.ActiveConns)
}

// Every op type over one connection, answers checked against the float64 loops.
func TestServerManyOpsOneConn(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, nil)
	c := ts.dial(t)
	type opCase struct {
		op   byte
		js   string
		a, b []float32
		want func() []float32
	}
	matmul := func(id int, as, bs []int) opCase {
		a, b := ramp(prod(as), id), ramp(prod(bs), id+1)
		js := fmt.Sprintf(`{"op_id": %d, "A_shape": %s, "B_shape": %s, "dtype": "float32"}`, id, jsonInts(as), jsonInts(bs))
		return opCase{op: 3, js: js, a: a, b: b, want: func() []float32 { _, d := naiveMatmul(as, bs, a, b); return d }}
	}
	conv := func(id int, cv deviceserver.Conv2D, extra string) opCase {
		in, w := ramp(prod(cv.InputShape[:]), id), ramp(prod(cv.WeightShape[:]), id+1)
		js := fmt.Sprintf(`{"op_id": %d, "input_shape": %s, "weight_shape": %s%s, "dtype": "float32"}`,
			id, jsonInts(cv.InputShape[:]), jsonInts(cv.WeightShape[:]), extra)
		cv.Input, cv.Weight = in, w
		return opCase{op: 2, js: js, a: in, b: w, want: func() []float32 { _, d := naiveConv(&cv); return d }}
	}
	var cases []opCase
	for i := range 40 {
		m, n, k := 1+i%5, 1+(i*3)%7, 1+(i*5)%9
		a, b := ramp(m*k, i), ramp(k*n, i+1)
		cases = append(cases, opCase{op: 1, js: gemmJSONFor(i, m, n, k), a: a, b: b,
			want: func() []float32 { return naiveGEMM(a, b, m, n, k) }})
		switch i % 4 {
		case 0:
			cases = append(cases, matmul(i, []int{2, 1, 3, 4}, []int{5, 4, 2}))
		case 1:
			cases = append(cases, matmul(i, []int{4}, []int{3, 4, 2}))
		case 2:
			cases = append(cases, conv(i, deviceserver.Conv2D{InputShape: [4]int{2, 4, 6, 5}, WeightShape: [4]int{6, 2, 3, 2},
				Stride: [2]int{2, 1}, Padding: [2]int{1, 0}, Dilation: [2]int{1, 2}, Groups: 2},
				`, "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2], "groups": 2`))
		case 3:
			cases = append(cases, conv(i, deviceserver.Conv2D{InputShape: [4]int{1, 3, 5, 5}, WeightShape: [4]int{2, 3, 3, 3},
				Stride: [2]int{1, 1}, Padding: [2]int{0, 0}, Dilation: [2]int{1, 1}, Groups: 1}, ``))
		}
	}
	for i, oc := range cases {
		_, err := c.Write(frame(oc.op, oc.js, oc.a, oc.b))
		require.NoError(t, err)
		got, err := readResponse(c)
		require.NoError(t, err, "op %d", i)
		require.Equal(t, oc.want(), got, "op %d: %s", i, oc.js)
	}
	st := ts.Stats()
	assert.Equal(t, uint64(len(cases)), st.Ops)
	assert.Equal(t, uint64(40), st.OpsGEMM)
	assert.Equal(t, uint64(20), st.OpsMatmul)
	assert.Equal(t, uint64(20), st.OpsConv)
}

// A 1-D·1-D MATMUL answers with a 0-d tensor: 4 bytes, the dot product 1·5+2·6+3·7+4·8 = 70.
func TestServerScalarResult(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, nil)
	c := ts.dial(t)
	_, err := c.Write(frame(3, `{"op_id": 1, "A_shape": [4], "B_shape": [4], "dtype": "float32"}`,
		[]float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}))
	require.NoError(t, err)
	got, err := readResponse(c)
	require.NoError(t, err)
	assert.Equal(t, []float32{70}, got)
}

func prod(s []int) int {
	p := 1
	for _, d := range s {
		p *= d
	}
	return p
}

func jsonInts(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func TestServerConcurrentConns(t *testing.T) {
	const conns, ops = 32, 25
	ts := startServer(t, &naiveExecutor{}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := ts.dial(t)
		wg.Go(func() {
			for j := range ops {
				if err := doGEMM(t, c, i*1000+j, 1+j%8, 1+i%16, 1+(i+j)%12); err != nil {
					errs <- fmt.Errorf("conn %d op %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, uint64(conns*ops), ts.Stats().Ops)
}

// hostile is one bad client: what it sends, whether it then half-closes, and what the
// server must call it.
type hostile struct {
	name      string
	send      []byte
	halfClose bool
	kind      ErrorKind
	field     string
}

func hostileCases() []hostile {
	good := gemmJSONFor(5, 2, 3, 4)
	gf := frame(1, good, ramp(8, 1), ramp(12, 2))
	head := func(op byte, n uint32) []byte {
		return append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, Magic), n), op)
	}
	js := func(op byte, s string) []byte { return append(head(op, uint32(len(s))), s...) }
	tA := HeaderSize + len(good) // offset of A's length prefix
	cases := []hostile{
		{name: "http-request", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), kind: KindMagic, field: "magic"},
		{name: "one-wrong-byte-then-wait", send: []byte{0x00}, kind: KindMagic, field: "magic"},
		{name: "json-length-4GiB", send: head(1, 0xffffffff), kind: KindLimit, field: "json_length"},
		{name: "json-length-64KiB+1", send: head(1, MaxJSONBytes+1), kind: KindLimit, field: "json_length"},
		{name: "unknown-op-type", send: head(0x07, 10), kind: KindOpType, field: "op_type"},
		{name: "invalid-utf8", send: js(1, "{\"op_id\": 1, \"dtype\": \"\xc3\x28\"}"), kind: KindJSON, field: "json"},
		{name: "invalid-json", send: js(1, `{"op_id": 1, "M": }`), kind: KindJSON, field: "json"},
		{name: "json-wrong-type", send: js(1, `{"op_id": 1, "M": "four"}`), kind: KindJSON, field: "M"},
		{name: "zero-dim", send: js(1, gemmJSONFor(1, 2, 0, 4)), kind: KindField, field: "N"},
		{name: "negative-dim", send: js(1, gemmJSONFor(1, -2, 3, 4)), kind: KindField, field: "M"},
		{name: "huge-dims", send: js(1, gemmJSONFor(1, 1<<30, 1<<30, 1<<30)), kind: KindLimit, field: "A"},
		{name: "dims-beyond-int32", send: js(1, `{"op_id":1,"M":1099511627776,"N":1,"K":1,"A_shape":[1099511627776,1],"B_shape":[1,1],"dtype":"float32"}`), kind: KindLimit, field: "M"},
		{name: "shape-disagrees", send: js(1, `{"op_id":1,"M":2,"N":3,"K":4,"A_shape":[2,4],"B_shape":[3,4],"dtype":"float32"}`), kind: KindField, field: "B_shape"},
		{name: "missing-field", send: js(1, `{"op_id":1,"M":2,"N":3,"A_shape":[2,4],"B_shape":[4,3],"dtype":"float32"}`), kind: KindField, field: "K"},
		{name: "unknown-dtype", send: js(1, strings.Replace(good, "float32", "float64", 1)), kind: KindDType, field: "dtype"},
		{name: "tensor-length-disagrees", send: append(js(1, good), 0, 0, 0, 31), kind: KindLength, field: "tensor A length"},
		{name: "tensor-length-near-4GiB", send: append(js(1, good), 0xff, 0xff, 0xff, 0xff), kind: KindLength, field: "tensor A length"},
		{name: "matmul-no-broadcast", send: js(3, `{"op_id":1,"A_shape":[2,3,4],"B_shape":[3,4,5],"dtype":"float32"}`), kind: KindField, field: "B_shape[0]"},
		{name: "conv-kernel-too-big", send: js(2, `{"op_id":1,"input_shape":[1,1,2,2],"weight_shape":[1,1,3,3],"dtype":"float32"}`), kind: KindField, field: "weight_shape[2]"},
		{name: "conv-unknown-field", send: js(2, `{"op_id":1,"input_shape":[1,1,2,2],"weight_shape":[1,1,1,1],"strides":2,"dtype":"float32"}`), kind: KindJSON, field: "json"},
		{name: "half-header-then-wait", send: gf[:6], kind: KindTimeout, field: "json_length"},
		{name: "half-tensor-then-wait", send: gf[:tA+4+10], kind: KindTimeout, field: "tensor A"},
	}
	// Truncation at every field: the client half-closes after the cut.
	for _, cut := range []struct {
		at    int
		field string
	}{
		{2, "magic"}, {4, "json_length"}, {6, "json_length"}, {8, "op_type"}, {9, "json"}, {30, "json"},
		{tA, "tensor A length"}, {tA + 2, "tensor A length"}, {tA + 4, "tensor A"}, {tA + 4 + 17, "tensor A"},
		{tA + 4 + 32, "tensor B length"}, {tA + 4 + 32 + 4, "tensor B"}, {len(gf) - 1, "tensor B"},
	} {
		cases = append(cases, hostile{name: fmt.Sprintf("truncated-at-%d", cut.at), send: gf[:cut.at],
			halfClose: true, kind: KindTruncated, field: cut.field})
	}
	return cases
}

// Each hostile client is disconnected within a second and explained by exactly one log
// line, while a good client on another connection keeps getting answers throughout.
func TestServerHostileInputs(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, func(s *Server) { s.ReadTimeout = 300 * time.Millisecond })

	stop := make(chan struct{})
	var goodOps atomic.Int64
	goodErr := make(chan error, 1)
	good := ts.dial(t)
	go func() {
		defer close(goodErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := doGEMM(t, good, i, 4, 16, 8); err != nil {
				goodErr <- err
				return
			}
			goodOps.Add(1)
		}
	}()

	cases := hostileCases()
	require.GreaterOrEqual(t, len(cases), 15)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.Stats().Errors[tt.kind]
			c := ts.dial(t)
			_, err := c.Write(tt.send)
			require.NoError(t, err)
			if tt.halfClose {
				require.NoError(t, c.CloseWrite())
			}
			start := time.Now()
			require.NoError(t, c.SetReadDeadline(start.Add(time.Second)))
			n, err := c.Read(make([]byte, 64))
			assert.Zero(t, n, "server sent bytes to a bad client")
			assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET),
				"want the connection closed within 1 s, got %v after %v", err, time.Since(start))

			lines := ts.log.problems(t, c.LocalAddr().String())
			require.Len(t, lines, 1, "want exactly one log line for the connection")
			l := lines[0]
			assert.Equal(t, tt.kind.String(), l["kind"], l)
			assert.Equal(t, tt.field, l["field"], l)
			assert.Contains(t, l, "conn")
			assert.Contains(t, l, "offset")
			assert.Equal(t, before+1, ts.Stats().Errors[tt.kind])
		})
	}
	close(stop)
	require.NoError(t, <-goodErr)
	assert.Greater(t, goodOps.Load(), int64(len(cases)), "the good client should have been served throughout")
}

// The op_id is logged once the JSON has been read.
func TestServerLogsOpID(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, nil)
	c := ts.dial(t)
	_, err := c.Write(append(frame(1, gemmJSONFor(77, 2, 2, 2))[:0:0], frame(1, gemmJSONFor(77, 2, 2, 2))...))
	require.NoError(t, err)
	_, err = c.Write([]byte{0, 0, 0, 1})
	require.NoError(t, err)
	_, err = readResponse(c)
	require.Error(t, err)
	lines := ts.log.problems(t, c.LocalAddr().String())
	require.Len(t, lines, 1)
	assert.Equal(t, float64(77), lines[0]["op_id"])
	assert.Equal(t, "bad_length", lines[0]["kind"])
}

func TestServerExecutorErrors(t *testing.T) {
	tests := []struct {
		name string
		exec *naiveExecutor
	}{
		{"error", &naiveExecutor{fail: func(*deviceserver.Op) error { return errors.New("device on fire") }}},
		{"short-result", &naiveExecutor{mod: func(r *deviceserver.Result) { r.Data = r.Data[:1] }}},
		{"nil-result", &naiveExecutor{mod: func(r *deviceserver.Result) { *r = deviceserver.Result{} }}},
		{"panic", &naiveExecutor{fail: func(*deviceserver.Op) error { panic("bug") }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.exec, nil)
			c := ts.dial(t)
			_, err := c.Write(frame(1, gemmJSONFor(3, 2, 2, 2), ramp(4, 1), ramp(4, 2)))
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
			_, err = readResponse(c)
			assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "got %v", err)
			lines := ts.log.problems(t, c.LocalAddr().String())
			require.Len(t, lines, 1)
			assert.Equal(t, "error", lines[0]["level"])
			assert.Equal(t, "executor", lines[0]["kind"])
			assert.Equal(t, float64(3), lines[0]["op_id"])
			assert.Equal(t, uint64(1), ts.Stats().Errors[KindExecutor])
			if tt.name == "panic" {
				assert.Contains(t, lines[0]["stack"], "TestServerExecutorErrors", "a recovered panic is logged with its stack")
			} else {
				assert.NotContains(t, lines[0], "stack")
			}
		})
	}
}

// Shutdown lets an op in flight finish and its answer reach the client, closes idle
// connections at once, and makes Serve return ErrServerClosed.
func TestServerShutdownDrains(t *testing.T) {
	entered := make(chan struct{}, 1)
	exec := &naiveExecutor{gate: make(chan struct{}), seen: func(*deviceserver.Op) { entered <- struct{}{} }}
	ts := startServer(t, exec, nil)
	busy, idle := ts.dial(t), ts.dial(t)
	_, err := busy.Write(handGEMMFrame)
	require.NoError(t, err)
	<-entered
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 2 }, time.Second, time.Millisecond)

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ts.Shutdown(context.Background()) }()

	select {
	case err := <-ts.serveCh:
		assert.ErrorIs(t, err, ErrServerClosed)
		ts.serveCh <- err // for the cleanup's check
	case <-time.After(time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	require.NoError(t, idle.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = idle.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the idle connection should be closed")
	_, err = net.DialTimeout("tcp", ts.addr, 100*time.Millisecond)
	assert.Error(t, err, "no new connections after Shutdown")

	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown returned %v with an op in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	exec.gate <- struct{}{}
	got := make([]byte, len(handGEMMResponse))
	require.NoError(t, busy.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = io.ReadFull(busy, got)
	require.NoError(t, err)
	assert.Equal(t, handGEMMResponse, got)
	_, err = busy.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the drained connection should be closed")
	select {
	case err := <-shutdownErr:
		assert.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("Shutdown did not return after the op finished")
	}
	assert.Equal(t, int64(0), ts.Stats().ActiveConns)
	assert.ErrorIs(t, ts.Serve(mustListen(t)), ErrServerClosed)
}

func TestServerShutdownTimeout(t *testing.T) {
	exec := &naiveExecutor{gate: make(chan struct{})}
	ts := startServer(t, exec, nil)
	c := ts.dial(t)
	_, err := c.Write(handGEMMFrame)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ts.Stats().OpsInFlight == 1 }, time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, ts.Shutdown(ctx), context.DeadlineExceeded)
	// Close cancels the op's context; the connection goes away.
	require.NoError(t, ts.Close())
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, time.Second, time.Millisecond)
}

func mustListen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

func TestServerMaxConnsAndIdleTimeout(t *testing.T) {
	ts := startServer(t, &naiveExecutor{}, func(s *Server) {
		s.MaxConns = 2
		s.IdleTimeout = 200 * time.Millisecond
	})
	a, b := ts.dial(t), ts.dial(t)
	require.NoError(t, doGEMM(t, a, 1, 2, 2, 2))
	require.NoError(t, doGEMM(t, b, 2, 2, 2, 2))
	third := ts.dial(t)
	require.NoError(t, third.SetReadDeadline(time.Now().Add(time.Second)))
	_, err := third.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "got %v", err)
	assert.Equal(t, uint64(1), ts.Stats().Errors[KindConnLimit])

	// Idle connections are closed after IdleTimeout, quietly.
	require.NoError(t, a.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = a.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	assert.Empty(t, ts.log.problems(t, a.LocalAddr().String()))
}

func TestServerWarnsOnNonLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skip("cannot bind 0.0.0.0:", err)
	}
	logs := &syncBuffer{}
	s := &Server{Executor: &naiveExecutor{}}
	s.Logger = s.Logger.Output(logs)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "non-loopback") }, time.Second, time.Millisecond)
	require.NoError(t, s.Shutdown(context.Background()))
	assert.ErrorIs(t, <-done, ErrServerClosed)
}

// Clients that vanish mid-header, mid-tensor or while their op executes leave no
// goroutine behind.
func TestServerNoGoroutineLeak(t *testing.T) {
	ts := startServer(t, &naiveExecutor{delay: 20 * time.Millisecond}, nil)
	warm := ts.dial(t)
	require.NoError(t, doGEMM(t, warm, 1, 2, 2, 2))
	require.NoError(t, warm.Close())
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, time.Second, time.Millisecond)
	baseline := runtime.NumGoroutine()

	f := frame(1, gemmJSONFor(1, 8, 8, 8), ramp(64, 1), ramp(64, 2))
	for _, cut := range []int{3, HeaderSize + 5, len(f) - 100, len(f) - 1, len(f)} {
		for range 4 {
			c, err := net.Dial("tcp", ts.addr)
			require.NoError(t, err)
			_, err = c.Write(f[:cut])
			require.NoError(t, err)
			if cut == len(f) {
				time.Sleep(5 * time.Millisecond) // let the op start executing
			}
			require.NoError(t, c.Close())
		}
	}
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, 3*time.Second, time.Millisecond)
	// Polled by hand: require.Eventually runs its condition on a goroutine of its own.
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(3 * time.Second); n > baseline && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	assert.LessOrEqual(t, n, baseline, "goroutines left behind")
}

// fivePieceOp sends a frame in the reference client's five sendall calls.
func fivePieceOp(c net.Conn, parts [][]byte) error {
	for _, p := range parts {
		if _, err := c.Write(p); err != nil {
			return err
		}
	}
	_, err := readResponse(c)
	return err
}

// With Nagle on at the client (the reference client's setting) and the frame in five
// writes, an op must not pay the 40 ms delayed-ACK stall.
func TestServerFivePieceLatency(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_QUICKACK is Linux only")
	}
	ts := startServer(t, &naiveExecutor{}, nil)
	c := ts.dial(t)
	require.NoError(t, c.SetNoDelay(false))
	parts := frameParts(1, gemmJSONFor(1, 4, 16, 8), ramp(32, 1), ramp(128, 2))
	// Linux starts every connection in quick-ACK mode; the stall shows after it has left.
	for range 30 {
		require.NoError(t, fivePieceOp(c, parts))
	}
	var took []time.Duration
	for range 20 {
		start := time.Now()
		require.NoError(t, fivePieceOp(c, parts))
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	median := took[len(took)/2]
	t.Logf("five-piece op: median %v, max %v", median, took[len(took)-1])
	assert.Less(t, median, 20*time.Millisecond)
}

func TestListenAndServe(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0", Executor: &naiveExecutor{}}
	s.init() // the test reads s.listeners below; init must not race with that read
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe() }()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.listeners) == 1
	}, time.Second, time.Millisecond)
	require.NoError(t, s.Shutdown(context.Background()))
	assert.ErrorIs(t, <-done, ErrServerClosed)
	assert.ErrorIs(t, s.ListenAndServe(), ErrServerClosed)
	assert.ErrorIs(t, (&Server{}).Serve(mustListen(t)), ErrNoExecutor)
}

// The ops of all connections share MaxInflightBytes: an op that does not fit waits, before
// its tensors are read, for another to finish; one larger than the whole budget is refused.
func TestServerInflightBudget(t *testing.T) {
	entered := make(chan struct{}, 4)
	exec := &naiveExecutor{gate: make(chan struct{}), seen: func(*deviceserver.Op) { entered <- struct{}{} }}
	// A 4×4×4 GEMM holds (16+16+16)·4 = 192 bytes: one fits in 300, two do not.
	ts := startServer(t, exec, func(s *Server) { s.MaxInflightBytes = 300 })
	first, second := ts.dial(t), ts.dial(t)
	a, b := ramp(16, 1), ramp(16, 2)
	_, err := first.Write(frame(1, gemmJSONFor(1, 4, 4, 4), a, b))
	require.NoError(t, err)
	<-entered
	_, err = second.Write(frame(1, gemmJSONFor(2, 4, 4, 4), a, b))
	require.NoError(t, err)
	select {
	case <-entered:
		t.Fatal("the second op ran while the first held the budget")
	case <-time.After(100 * time.Millisecond):
	}
	exec.gate <- struct{}{} // the first op finishes and releases its 192 bytes
	got, err := readResponse(first)
	require.NoError(t, err)
	assert.Equal(t, naiveGEMM(a, b, 4, 4, 4), got)
	select {
	case <-entered:
	case <-time.After(time.Second):
		t.Fatal("the second op did not start once the budget was free")
	}
	exec.gate <- struct{}{}
	got, err = readResponse(second)
	require.NoError(t, err)
	assert.Equal(t, naiveGEMM(a, b, 4, 4, 4), got)

	// 8×8×8: 768 bytes, more than the whole budget: refused at once, one log line.
	big := ts.dial(t)
	_, err = big.Write(frame(1, gemmJSONFor(3, 8, 8, 8), ramp(64, 1), ramp(64, 2)))
	require.NoError(t, err)
	require.NoError(t, big.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = big.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool { return len(ts.log.lines(t, "in-flight limit")) == 1 }, time.Second, 5*time.Millisecond)
}

// deadlineConn records the write deadlines a connection is given.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetWriteDeadline(d time.Time) error {
	c.set = append(c.set, d)
	return nil
}

// The write deadline is re-armed only once a quarter of WriteTimeout has passed since it
// was set, so every write has between ¾ of WriteTimeout and all of it; a negative
// WriteTimeout sets none.
func TestWriteDeadlineRearmedAfterAQuarter(t *testing.T) {
	const wt = 40 * time.Second
	nc := &deadlineConn{}
	c := &conn{s: &Server{WriteTimeout: wt}, nc: nc}
	t0 := time.Now()
	for _, at := range []time.Duration{0, time.Second, wt / 4, wt/4 + time.Millisecond, wt, 3 * wt} {
		c.armWriteDeadline(t0.Add(at))
		last := nc.set[len(nc.set)-1]
		left := last.Sub(t0.Add(at))
		assert.True(t, left >= wt-wt/4 && left <= wt, "write at %v has %v of its %v", at, left, wt)
	}
	var want []time.Time
	for _, at := range []time.Duration{0, wt / 4, wt, 3 * wt} {
		want = append(want, t0.Add(at).Add(wt))
	}
	assert.Equal(t, want, nc.set, "re-armed at 0, ¼, 1 and 3 timeouts")

	none := &deadlineConn{}
	c = &conn{s: &Server{WriteTimeout: -1}, nc: none}
	c.armWriteDeadline(t0)
	assert.Empty(t, none.set)
}

// A client that sends an op and never reads its 16 MiB answer is disconnected once the
// answer's write has waited WriteTimeout (at least ¾ of it), counted as a write error.
func TestWriteTimeoutDisconnectsAClientThatDoesNotRead(t *testing.T) {
	const wt = 200 * time.Millisecond
	ts := startServer(t, &naiveExecutor{}, func(s *Server) { s.WriteTimeout = wt })
	c := ts.dial(t)
	require.NoError(t, c.SetReadBuffer(4096))
	const m, n = 2048, 2048
	start := time.Now()
	_, err := c.Write(frame(1, gemmJSONFor(1, m, n, 1), ramp(m, 1), ramp(n, 2)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ts.Stats().Errors[KindWrite] == 1 }, 5*time.Second, time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), wt-wt/4)
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, time.Second, time.Millisecond)
}
