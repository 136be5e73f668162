package tcpfront

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/syncbuffer"
	"github.com/sstemu/sstemu/pkg/deviceserver"
)

// naiveExecutor computes every op in float64 with plain loops, independently of the
// package's own shape code, as the reference the tests compare against.
type naiveExecutor struct {
	delay time.Duration                // sleep before answering
	gate  chan struct{}                // if set, wait for a value before answering
	fail  func(*deviceserver.Op) error // if set and non-nil, return this error
	mod   func(*deviceserver.Result)   // if set, tamper with the result
	seen  func(*deviceserver.Op)       // if set, called on entry
}

func (e *naiveExecutor) Execute(ctx context.Context, op *deviceserver.Op) (*deviceserver.Result, error) {
	if e.seen != nil {
		e.seen(op)
	}
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	if e.fail != nil {
		if err := e.fail(op); err != nil {
			return nil, err
		}
	}
	var res *deviceserver.Result
	switch op.Type {
	case deviceserver.OpGEMM:
		g := op.GEMM
		res = &deviceserver.Result{Shape: []int{g.M, g.N}, Data: naiveGEMM(g.A, g.B, g.M, g.N, g.K)}
	case deviceserver.OpMatmul:
		shape, data := naiveMatmul(op.Matmul.AShape, op.Matmul.BShape, op.Matmul.A, op.Matmul.B)
		res = &deviceserver.Result{Shape: shape, Data: data}
	case deviceserver.OpConv:
		shape, data := naiveConv(op.Conv)
		res = &deviceserver.Result{Shape: shape, Data: data}
	default:
		return nil, fmt.Errorf("op type %v", op.Type)
	}
	if e.mod != nil {
		e.mod(res)
	}
	return res, nil
}

func naiveGEMM(a, b []float32, m, n, k int) []float32 {
	c := make([]float32, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			c[i*n+j] = float32(s)
		}
	}
	return c
}

// naiveMatmul follows the torch.matmul documentation literally: promote 1-D operands,
// broadcast the batch dimensions, multiply each pair of matrices, drop promoted dims.
func naiveMatmul(as, bs []int, a, b []float32) ([]int, []float32) {
	pa, pb := append([]int(nil), as...), append([]int(nil), bs...)
	if len(pa) == 1 {
		pa = []int{1, pa[0]}
	}
	if len(pb) == 1 {
		pb = []int{pb[0], 1}
	}
	n, k, p := pa[len(pa)-2], pa[len(pa)-1], pb[len(pb)-1]
	ba, bb := pa[:len(pa)-2], pb[:len(pb)-2]
	nb := max(len(ba), len(bb))
	batch := make([]int, nb)
	get := func(s []int, i int) int {
		if j := i - (nb - len(s)); j >= 0 {
			return s[j]
		}
		return 1
	}
	for i := range batch {
		batch[i] = max(get(ba, i), get(bb, i))
	}
	total := 1
	for _, d := range batch {
		total *= d
	}
	out := make([]float32, total*n*p)
	idx := make([]int, nb)
	for t := range total {
		rem := t
		for i := nb - 1; i >= 0; i-- {
			idx[i] = rem % batch[i]
			rem /= batch[i]
		}
		offA, offB := 0, 0
		for i := range nb {
			da, db := get(ba, i), get(bb, i)
			ia, ib := idx[i], idx[i]
			if da == 1 {
				ia = 0
			}
			if db == 1 {
				ib = 0
			}
			offA = offA*da + ia
			offB = offB*db + ib
		}
		c := naiveGEMM(a[offA*n*k:(offA+1)*n*k], b[offB*k*p:(offB+1)*k*p], n, p, k)
		copy(out[t*n*p:], c)
	}
	shape := append([]int(nil), batch...)
	if len(as) > 1 {
		shape = append(shape, n)
	}
	if len(bs) > 1 {
		shape = append(shape, p)
	}
	return shape, out
}

func naiveConv(c *deviceserver.Conv2D) ([]int, []float32) {
	n, ch, h, w := c.InputShape[0], c.InputShape[1], c.InputShape[2], c.InputShape[3]
	o, cg, kh, kw := c.WeightShape[0], c.WeightShape[1], c.WeightShape[2], c.WeightShape[3]
	oh := (h+2*c.Padding[0]-c.Dilation[0]*(kh-1)-1)/c.Stride[0] + 1
	ow := (w+2*c.Padding[1]-c.Dilation[1]*(kw-1)-1)/c.Stride[1] + 1
	og := o / c.Groups
	out := make([]float32, n*o*oh*ow)
	for b := range n {
		for oc := range o {
			g := oc / og
			for y := range oh {
				for x := range ow {
					var s float64
					for ic := range cg {
						for ky := range kh {
							for kx := range kw {
								iy := y*c.Stride[0] - c.Padding[0] + ky*c.Dilation[0]
								ix := x*c.Stride[1] - c.Padding[1] + kx*c.Dilation[1]
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								in := c.Input[((b*ch+g*cg+ic)*h+iy)*w+ix]
								wt := c.Weight[((oc*cg+ic)*kh+ky)*kw+kx]
								s += float64(in) * float64(wt)
							}
						}
					}
					out[((b*o+oc)*oh+y)*ow+x] = float32(s)
				}
			}
		}
	}
	return []int{n, o, oh, ow}, out
}

// frameParts encodes a request the way the reference client sends it: header+JSON, then
// for each tensor its u32 BE length and its LE float32 bytes, as separate pieces.
func frameParts(op byte, js string, tensors ...[]float32) [][]byte {
	head := binary.BigEndian.AppendUint32(nil, Magic)
	head = binary.BigEndian.AppendUint32(head, uint32(len(js)))
	head = append(head, op)
	head = append(head, js...)
	parts := [][]byte{head}
	for _, t := range tensors {
		parts = append(parts, binary.BigEndian.AppendUint32(nil, uint32(4*len(t))))
		data := make([]byte, 0, 4*len(t))
		for _, v := range t {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		parts = append(parts, data)
	}
	return parts
}

func frame(op byte, js string, tensors ...[]float32) []byte {
	return bytes.Join(frameParts(op, js, tensors...), nil)
}

func gemmJSONFor(id, m, n, k int) string {
	return fmt.Sprintf(`{"op_id": %d, "M": %d, "N": %d, "K": %d, "A_shape": [%d, %d], "B_shape": [%d, %d], "dtype": "float32"}`,
		id, m, n, k, m, k, k, n)
}

// ramp returns n values derived from seed, exactly representable so sums are exact.
func ramp(n, seed int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7+seed*13)%11 - 5)
	}
	return v
}

// readResponse reads one response: u32 BE byte length, then LE float32s.
func readResponse(r io.Reader) ([]float32, error) {
	var pre [4]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(pre[:])
	if n%4 != 0 {
		return nil, fmt.Errorf("response length %d not a multiple of 4", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	out := make([]float32, n/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return out, nil
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct{ syncbuffer.Buffer }

// lines returns the decoded JSON log lines that contain substr.
func (b *syncBuffer) lines(t testing.TB, substr string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" || !strings.Contains(l, substr) {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// problems returns the warn/error lines about the connection whose client end is local.
func (b *syncBuffer) problems(t testing.TB, local string) []map[string]any {
	var out []map[string]any
	for _, m := range b.lines(t, `"`+local+`"`) {
		if m["remote"] == local && (m["level"] == "warn" || m["level"] == "error") {
			out = append(out, m)
		}
	}
	return out
}

// testServer is a Server on a loopback port with its log captured.
type testServer struct {
	*Server
	addr    string
	log     *syncBuffer
	serveCh chan error
}

func startServer(t testing.TB, exec deviceserver.Executor, configure func(*Server)) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	logs := &syncBuffer{}
	s := &Server{Executor: exec, Logger: zerolog.New(logs).Level(zerolog.DebugLevel)}
	if configure != nil {
		configure(s)
	}
	ts := &testServer{Server: s, addr: l.Addr().String(), log: logs, serveCh: make(chan error, 1)}
	go func() { ts.serveCh <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-ts.serveCh:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return")
		}
	})
	return ts
}

func (ts *testServer) dial(t testing.TB) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// doGEMM sends one GEMM as one write and checks the answer against naiveGEMM.
func doGEMM(t testing.TB, c net.Conn, id, m, n, k int) error {
	a, b := ramp(m*k, id), ramp(k*n, id+1)
	if _, err := c.Write(frame(1, gemmJSONFor(id, m, n, k), a, b)); err != nil {
		return err
	}
	got, err := readResponse(c)
	if err != nil {
		return err
	}
	want := naiveGEMM(a, b, m, n, k)
	if len(got) != len(want) {
		return fmt.Errorf("op %d: got %d values, want %d", id, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("op %d: C[%d] = %v, want %v", id, i, got[i], want[i])
		}
	}
	return nil
}
