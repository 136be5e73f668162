package stack_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/cputime"
	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/loadgen"
	"github.com/sstemu/sstemu/pkg/stack"
	"github.com/sstemu/sstemu/pkg/tcpfront"
)

// smallOpFrame is one 4×16×8 GEMM frame as the reference client sends it: A all ones, B
// all twos, so that every element of the answer is 2·K.
func smallOpFrame(m, n, k int) []byte {
	js := fmt.Sprintf(`{"op_id": 7, "M": %d, "N": %d, "K": %d, "A_shape": [%d, %d], "B_shape": [%d, %d], "dtype": "float32"}`,
		m, n, k, m, k, k, n)
	f := binary.BigEndian.AppendUint32(nil, tcpfront.Magic)
	f = binary.BigEndian.AppendUint32(f, uint32(len(js)))
	f = append(append(f, byte(deviceserver.OpGEMM)), js...)
	for _, t := range []struct {
		elems int
		v     float32
	}{{m * k, 1}, {k * n, 2}} {
		f = binary.BigEndian.AppendUint32(f, uint32(4*t.elems))
		for range t.elems {
			f = binary.LittleEndian.AppendUint32(f, math.Float32bits(t.v))
		}
	}
	return f
}

// replayConn is a client in memory: it offers frames one at a time, the next only once
// the answer to the last has been written in full, as a client waiting for its answer
// does, and checks each answer. After its frames it reads as EOF. Deadlines are accepted
// and ignored: the benchmark measures the server's code, not the kernel's TCP.
type replayConn struct {
	frame, answer []byte
	frames        int // frames left to offer, the current one included
	pos           int // read position in the current frame
	got           []byte
	err           error
	closed        chan struct{}
	once          sync.Once
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.frames == 0 {
		return 0, io.EOF
	}
	if c.pos == len(c.frame) {
		return 0, errors.New("replayConn: read again before the answer was written")
	}
	n := copy(p, c.frame[c.pos:])
	c.pos += n
	return n, nil
}

func (c *replayConn) Write(p []byte) (int, error) {
	c.got = append(c.got, p...)
	if len(c.got) >= len(c.answer) {
		if string(c.got) != string(c.answer) && c.err == nil {
			c.err = fmt.Errorf("answer %x, want %x", c.got, c.answer)
		}
		c.got, c.pos = c.got[:0], 0
		c.frames--
	}
	return len(p), nil
}

func (c *replayConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }
func (c *replayConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9999}
}
func (c *replayConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener hands out one connection, then waits until it is closed.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// Shape and answer of the replayed small op.
const smallM, smallN, smallK = 4, 16, 8

// smallServer is one server of BenchmarkServeSmallOp, by its Serve method.
type smallServer struct {
	name  string
	serve func(net.Listener) error
}

// smallServers are the two servers BenchmarkServeSmallOp compares: all five layers as
// serve builds them, and the floor.
func smallServers(tb testing.TB) []smallServer {
	st, err := stack.Build(context.Background(), stack.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return []smallServer{{"sstemu", st.Front().Serve}, {"floor", loadgen.NewFloorServer().Serve}}
}

// replaySmallOps serves frames small ops over one replayConn with serve, and returns the
// first wrong answer, or that the connection closed before all were answered.
func replaySmallOps(serve func(net.Listener) error, frames int) error {
	answer := binary.BigEndian.AppendUint32(nil, 4*smallM*smallN)
	for range smallM * smallN {
		answer = binary.LittleEndian.AppendUint32(answer, math.Float32bits(2*smallK))
	}
	c := &replayConn{frame: smallOpFrame(smallM, smallN, smallK), answer: answer, frames: frames, closed: make(chan struct{})}
	l := &oneConnListener{conn: c, done: make(chan struct{})}
	go func() { _ = serve(l) }()
	<-c.closed
	_ = l.Close()
	if c.err == nil && c.frames != 0 {
		c.err = fmt.Errorf("connection closed with %d frames unanswered", c.frames)
	}
	return c.err
}

// The in-memory connection BenchmarkServeSmallOp measures gets every answer right from
// both servers.
func TestReplayedSmallOps(t *testing.T) {
	for _, s := range smallServers(t) {
		t.Run(s.name, func(t *testing.T) {
			require.NoError(t, replaySmallOps(s.serve, 200))
		})
	}
}

// BenchmarkServeSmallOp is the servers' own share of target 3: 4×16×8 ops over one
// connection in memory (no kernel, no client: what is left is the servers' code), each
// answer checked byte for byte, through all five layers as serve builds them (sstemu)
// and through the one-layer floor server (floor). Reports each one's CPU time per op,
// which is what 32 connections of small ops share two cores with the kernel's TCP and
// the clients for.
func BenchmarkServeSmallOp(b *testing.B) {
	for _, s := range smallServers(b) {
		b.Run(s.name, func(b *testing.B) {
			if err := replaySmallOps(s.serve, 100); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cputime.Of(b)
			if err := replaySmallOps(s.serve, b.N); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cputime.Of(b)-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
		})
	}
}
