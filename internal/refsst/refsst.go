package refsst

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Kind says which build of the real component a Server behaves like.
type Kind int

const (
	// Shipped is acalsim.VirtIODevice as ACALSim ships it: NOOP, ECHO and COMPUTE (100
	// cycles a unit, whatever latency_model says); every other type, GEMM included, is
	// answered INVALID.
	Shipped Kind = iota
	// Tutorial is the component with the tutorial's GEMM added: Shipped plus GEMM through
	// the tutorial's roofline, computed as the tutorial writes it (64 FLOP a cycle,
	// 900 GB/s at 1.41 GHz, in 64-bit integers and a float64 division).
	Tutorial
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Shipped:
		return "shipped"
	case Tutorial:
		return "tutorial"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ComputeCost is the real component's cycles per COMPUTE unit.
const ComputeCost = 100

// The tutorial roofline's constants.
const (
	tutorialFLOPsPerCycle = 64
	tutorialBytesPerCycle = 900 / 1.41
)

// TutorialGEMMCycles returns the tutorial component's answer to an M×N×K GEMM of
// dtypeSize-byte elements: cycles, compute cycles, memory cycles, memory bytes.
func TutorialGEMMCycles(m, n, k, dtypeSize uint64) (cycles, compute, memory, bytes uint64) {
	flops := 2 * m * n * k
	bytes = (m*k + k*n + m*n) * dtypeSize
	compute = flops / tutorialFLOPsPerCycle
	memory = uint64(float64(bytes) / tutorialBytesPerCycle)
	return max(compute, memory), compute, memory, bytes
}

// Stats counts what a Server saw.
type Stats struct {
	// Conns is the connections accepted; Overruns those closed because a non-blocking
	// send found the socket full (EAGAIN), as the real component does.
	Conns, Overruns uint64
	// Requests is the whole requests received and answered; Split the requests that
	// arrived in more than one read and were dropped, as the real component drops them.
	Requests, Split uint64
	// Invalid is the requests answered INVALID.
	Invalid uint64
	// Cycles is the simulated cycles of every COMPUTE and GEMM answered.
	Cycles uint64
}

// Server is a fake of the real SST component on a Unix socket. It serves one client at a
// time (the next waits in the listen backlog until the current one goes), reads each
// request with a single read and drops it when that read returns less than a whole
// request, and answers each with a single non-blocking send: when the socket is full
// (EAGAIN) it closes the connection, as the real component treats EAGAIN as fatal. Its
// answers are the real component's (see Kind); its timestamps count cycles served.
type Server struct {
	kind Kind
	ln   *net.UnixListener

	conns, overruns, requests, split, invalid, cycles atomic.Uint64

	mu       sync.Mutex
	cur      *net.UnixConn
	closed   bool
	done     chan struct{}
	progress chan struct{} // closed and replaced at every event Wait checks
}

// Listen starts a Server of kind k on the Unix socket at path.
func Listen(path string, k Kind) (*Server, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	s := &Server{kind: k, ln: ln, done: make(chan struct{}), progress: make(chan struct{})}
	go s.serve()
	return s, nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{Conns: s.conns.Load(), Overruns: s.overruns.Load(), Requests: s.requests.Load(),
		Split: s.split.Load(), Invalid: s.invalid.Load(), Cycles: s.cycles.Load()}
}

// Wait blocks until cond holds for the server's statistics or ctx ends (then with its
// error). cond is checked after every answer and every connection's end.
func (s *Server) Wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		ch := s.progress
		s.mu.Unlock()
		if cond(s.Stats()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progressed wakes the goroutines in Wait.
func (s *Server) progressed() {
	s.mu.Lock()
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
}

// Close stops listening, closes the connection being served and waits for the server
// to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cur != nil {
		_ = s.cur.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	<-s.done
	return err
}

func (s *Server) serve() {
	defer close(s.done)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.cur = c
		s.mu.Unlock()
		s.conns.Add(1)
		s.serveConn(c) // one client at a time
		_ = c.Close()
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		s.progressed()
	}
}

// serveConn answers requests until the client goes, a send overruns or Close.
func (s *Server) serveConn(c *net.UnixConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	req := make([]byte, protocol.RequestSize)
	resp := make([]byte, protocol.ResponseSize)
	for {
		n, err := c.Read(req)
		if err != nil {
			return
		}
		if n < protocol.RequestSize {
			// The real component's single recv: a short one is dropped, and the stream
			// is then out of step, as it is there.
			s.split.Add(1)
			s.progressed()
			continue
		}
		s.answer(req, resp)
		var sendErr error
		if err := raw.Write(func(fd uintptr) bool {
			sendErr = syscall.Sendto(int(fd), resp, syscall.MSG_DONTWAIT, nil)
			return true // never wait: a full socket is the real component's fatal EAGAIN
		}); err != nil {
			return
		}
		if sendErr != nil {
			if errors.Is(sendErr, syscall.EAGAIN) {
				s.overruns.Add(1)
			}
			return
		}
		s.progressed()
	}
}

// answer fills resp with the real component's answer to req.
func (s *Server) answer(b, out []byte) {
	var req protocol.Request
	_ = req.Decode(b) // b is exactly RequestSize long
	resp := protocol.Response{Status: protocol.StatusOK, RequestID: req.RequestID, UserData: req.UserData}
	s.requests.Add(1)
	switch {
	case req.Type == protocol.ReqNoop:
	case req.Type == protocol.ReqEcho:
		resp.Payload = req.Payload
		resp.Result = protocol.MaxDataSize
	case req.Type == protocol.ReqCompute:
		_, cycles := bits.Mul64(req.Compute().ComputeUnits, ComputeCost) // the real one wraps too
		start := s.cycles.Add(cycles) - cycles
		resp.SetCompute(protocol.ComputeResult{Cycles: cycles, Timestamp: start})
		resp.Result = cycles
	case req.Type == protocol.ReqGEMM && s.kind == Tutorial:
		g := req.GEMM()
		cycles, compute, memory, bytes := TutorialGEMMCycles(uint64(g.M), uint64(g.N), uint64(g.K), uint64(g.DtypeSize))
		s.cycles.Add(cycles)
		resp.SetGEMM(protocol.GEMMResult{Cycles: cycles, ComputeCycles: compute, MemoryCycles: memory, MemoryBytes: bytes})
		resp.Result = cycles
	default:
		resp.Status = protocol.StatusInvalid
		s.invalid.Add(1)
	}
	_ = resp.Encode(out) // out is exactly ResponseSize long
}
