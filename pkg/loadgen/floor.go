package loadgen

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/sstemu/sstemu/pkg/linalg"
)

// Floor server limits: just enough that a stray or hostile frame cannot make it allocate
// without bound.
const (
	floorMaxJSONBytes   = 64 << 10
	floorMaxTensorBytes = 64 << 20 // per tensor: 4096×4096 float32
	floorReadBuffer     = 64 << 10
)

// ErrFloorClosed is returned by FloorServer.Serve after Close.
var ErrFloorClosed = errors.New("loadgen: floor server closed")

// FloorServer is the minimal DeviceGEMM server, kept ONLY as the floor that benchmarks
// compare sstemu against: it reads a frame (magic, JSON with M, N and K, two tensors),
// computes the GEMM with linalg.Sgemm and answers in one write, and does nothing else.
//
// It is not for use: it checks only what it needs not to crash or over-allocate (op type
// GEMM, positive dimensions, tensor lengths, sizes up to 64 MiB per tensor), closes the
// connection on anything else without a word, ignores A_shape, B_shape and dtype, times
// nothing, logs nothing, has no timeouts and no graceful shutdown, and does not re-arm
// TCP_QUICKACK (so a client sending in pieces with Nagle on stalls about 40 ms per op, as
// against the reference's plain server).
type FloorServer struct {
	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// NewFloorServer returns a floor server; see FloorServer.
func NewFloorServer() *FloorServer {
	return &FloorServer{listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on l and serves each in its own goroutine until Close, then
// returns ErrFloorClosed. It closes l.
func (s *FloorServer) Serve(l net.Listener) error {
	defer l.Close()
	if !s.track(func() { s.listeners[l] = struct{}{} }) {
		return ErrFloorClosed
	}
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, l)
			s.mu.Unlock()
			if closed {
				return ErrFloorClosed
			}
			return fmt.Errorf("loadgen: floor server: accept: %w", err)
		}
		if !s.track(func() { s.conns[nc] = struct{}{} }) {
			_ = nc.Close()
			return ErrFloorClosed
		}
		s.wg.Go(func() { s.serveConn(nc) })
	}
}

// track runs add under the lock unless the server is closed, and reports whether it ran.
func (s *FloorServer) track(add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	add()
	return true
}

// Close closes every listener and connection and waits for the connections' goroutines.
func (s *FloorServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *FloorServer) serveConn(nc net.Conn) {
	defer func() {
		_ = nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	f := &floorFrame{r: bufio.NewReaderSize(nc, floorReadBuffer), maxTensorBytes: floorMaxTensorBytes}
	for {
		resp, err := f.next()
		if err != nil {
			return
		}
		if _, err := nc.Write(resp); err != nil {
			return
		}
	}
}

// floorFrame reads request frames from r and computes them, reusing its buffers.
type floorFrame struct {
	r              io.Reader
	maxTensorBytes int
	json           []byte
	a, b           []float32
	out            []float32        // element 0 holds the response's length prefix, then C
	hdr            [HeaderSize]byte // fields, not locals: io.ReadFull would make them escape
	pre            [LengthPrefixSize]byte
	dims           floorDims
	scratch        []byte
	resp           []byte // big-endian hosts only
}

// floorDims is all the floor reads from the JSON.
type floorDims struct {
	M, N, K int
}

// next reads one frame, computes it and returns the response bytes, valid until the next
// call. Any error means the stream must be abandoned.
func (f *floorFrame) next() ([]byte, error) {
	hdr := f.hdr[:]
	if _, err := io.ReadFull(f.r, hdr); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(hdr[0:4]) != Magic {
		return nil, errors.New("floor: bad magic")
	}
	jsonLen := binary.BigEndian.Uint32(hdr[4:8])
	if jsonLen > floorMaxJSONBytes {
		return nil, fmt.Errorf("floor: JSON of %d bytes", jsonLen)
	}
	if hdr[8] != OpTypeGEMM {
		return nil, fmt.Errorf("floor: op type %#x is not GEMM", hdr[8])
	}
	if cap(f.json) < int(jsonLen) {
		f.json = make([]byte, jsonLen)
	}
	js := f.json[:jsonLen]
	if _, err := io.ReadFull(f.r, js); err != nil {
		return nil, err
	}
	d := &f.dims
	*d = floorDims{}
	if err := json.Unmarshal(js, d); err != nil {
		return nil, fmt.Errorf("floor: JSON: %w", err)
	}
	elems := f.maxTensorBytes / Float32Size
	if d.M < 1 || d.N < 1 || d.K < 1 || d.M > elems/d.K || d.K > elems/d.N || d.M > elems/d.N {
		return nil, fmt.Errorf("floor: shape %d×%d×%d", d.M, d.N, d.K)
	}
	var err error
	if f.a, err = f.readTensor(f.a, d.M*d.K); err != nil {
		return nil, err
	}
	if f.b, err = f.readTensor(f.b, d.K*d.N); err != nil {
		return nil, err
	}
	mn := d.M * d.N
	f.out = grow(f.out, 1+mn)
	linalg.Sgemm(d.M, d.N, d.K, f.a, f.b, f.out[1:])
	if hostLittleEndian {
		resp := float32Bytes(f.out)
		binary.BigEndian.PutUint32(resp, uint32(mn*Float32Size))
		return resp, nil
	}
	f.resp = binary.BigEndian.AppendUint32(f.resp[:0], uint32(mn*Float32Size))
	f.resp = appendFloat32s(f.resp, f.out[1:])
	return f.resp, nil
}

// readTensor reads a length prefix, which must announce elems float32s, and the tensor into
// buf (grown as needed).
func (f *floorFrame) readTensor(buf []float32, elems int) ([]float32, error) {
	if _, err := io.ReadFull(f.r, f.pre[:]); err != nil {
		return buf, err
	}
	if n := binary.BigEndian.Uint32(f.pre[:]); int64(n) != int64(elems)*Float32Size {
		return buf, fmt.Errorf("floor: tensor of %d bytes, want %d", n, elems*Float32Size)
	}
	buf = grow(buf, elems)
	_, err := readFloat32s(f.r, buf, &f.scratch)
	return buf, err
}

// grow returns buf resized to n elements, reallocated only if too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
