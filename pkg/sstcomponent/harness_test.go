package sstcomponent

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// The tests build requests and read responses with explicit byte offsets from docs/sst-protocol.md,
// independently of pkg/protocol's codec.

var le = binary.LittleEndian

// Wire sizes and offsets, written out from docs/sst-protocol.md.
const (
	reqSize  = 4104
	respSize = 4112

	offType, offRequestID, offUserData = 0, 8, 16
	offReqPayload                      = 24
	offStatus, offResult               = 0, 24
	offRespPayload                     = 32

	statusOK, statusInvalid = 0, 3

	typeNoop, typeEcho, typeCompute, typeRead, typeWrite = 0, 1, 2, 3, 4
	typeReset, typeGetInfo, typeConfigure, typeGEMM      = 5, 6, 7, 8
	typeBatchedGEMM, typeGEMMList                        = 9, 10
)

// testTimeout bounds every blocking step of a test, so that a hang fails instead of
// stalling the suite.
const testTimeout = 10 * time.Second

// rawReq is an encoded SSTRequest under construction.
type rawReq []byte

// typeOf is the type field of an encoded request, as a device routing it reads it.
func typeOf(r []byte) protocol.RequestType { return protocol.RequestType(le.Uint32(r[offType:])) }

func newReq(typ uint32, id uint64) rawReq {
	b := make(rawReq, reqSize)
	le.PutUint32(b[offType:], typ)
	le.PutUint64(b[offRequestID:], id)
	le.PutUint64(b[offUserData:], id^0xABCD_0000_0000_0000)
	return b
}

func (r rawReq) u32(off int, v uint32) rawReq { le.PutUint32(r[off:], v); return r }
func (r rawReq) u64(off int, v uint64) rawReq { le.PutUint64(r[off:], v); return r }

func computeReq(id, units uint64, latencyModel uint32) rawReq {
	return newReq(typeCompute, id).u64(24, units).u32(32, latencyModel)
}

func gemmReq(id uint64, m, n, k, dtype uint32) rawReq {
	return newReq(typeGEMM, id).u32(24, m).u32(28, n).u32(32, k).u32(36, dtype)
}

func batchedGEMMReq(id uint64, m, n, k, dtype uint32, batch uint64) rawReq {
	return newReq(typeBatchedGEMM, id).u32(24, m).u32(28, n).u32(32, k).u32(36, dtype).u64(40, batch)
}

// listEntry is one entry of a GEMM_LIST request.
type listEntry struct {
	m, n, k uint32
	batch   uint64
}

// gemmListReq is a GEMM_LIST of entries (count = len(entries)), laid out by hand from
// docs/sst-protocol.md: count @24, dtype_size @28, 24-byte entries from @32.
func gemmListReq(id uint64, dtype uint32, entries ...listEntry) rawReq {
	r := newReq(typeGEMMList, id).u32(24, uint32(len(entries))).u32(28, dtype)
	for i, e := range entries {
		at := 32 + 24*i
		r = r.u32(at, e.m).u32(at+4, e.n).u32(at+8, e.k).u64(at+16, e.batch)
	}
	return r
}

func readReq(id, addr uint64, size uint32) rawReq {
	return newReq(typeRead, id).u64(24, addr).u32(32, size)
}

func writeReq(id, addr uint64, data []byte) rawReq {
	r := newReq(typeWrite, id).u64(24, addr).u32(32, uint32(len(data)))
	copy(r[40:], data)
	return r
}

func configureReq(id uint64, param uint32, value uint64) rawReq {
	return newReq(typeConfigure, id).u32(24, param).u64(32, value)
}

// rawResp is an encoded SSTResponse.
type rawResp []byte

func (r rawResp) status() uint32    { return le.Uint32(r[offStatus:]) }
func (r rawResp) requestID() uint64 { return le.Uint64(r[offRequestID:]) }
func (r rawResp) userData() uint64  { return le.Uint64(r[offUserData:]) }
func (r rawResp) result() uint64    { return le.Uint64(r[offResult:]) }
func (r rawResp) u32(off int) uint32 {
	return le.Uint32(r[off:])
}
func (r rawResp) u64(off int) uint64 { return le.Uint64(r[off:]) }

// tutorialParams are the tutorial's roofline constants, typed in from docs/models.md §Roofline rather
// than taken from perfmodel's preset.
func tutorialParams() perfmodel.Params {
	return perfmodel.Params{FLOPsPerCycle: 64, BandwidthGBps: 900, ClockGHz: 1.41}
}

// harness is a component serving a Unix socket in a temporary directory.
type harness struct {
	t      *testing.T
	comp   *Component
	path   string
	served chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	if cfg.Params == (perfmodel.Params{}) {
		cfg.Model, cfg.Params = perfmodel.KindRoofline, tutorialParams()
	}
	comp, err := New(cfg)
	require.NoError(t, err)
	h := &harness{t: t, comp: comp, path: filepath.Join(t.TempDir(), "sst.sock"), served: make(chan error, 1)}
	l, err := Listen(h.path)
	require.NoError(t, err)
	go func() { h.served <- comp.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		require.NoError(t, comp.Shutdown(ctx))
		select {
		case err := <-h.served:
			require.ErrorIs(t, err, ErrClosed)
		case <-ctx.Done():
			t.Fatal("Serve did not return after Shutdown")
		}
	})
	return h
}

// dial connects to the harness's socket; every I/O on the connection has a deadline.
func (h *harness) dial() *net.UnixConn {
	h.t.Helper()
	c, err := net.Dial("unix", h.path)
	require.NoError(h.t, err)
	require.NoError(h.t, c.SetDeadline(time.Now().Add(testTimeout)))
	h.t.Cleanup(func() { _ = c.Close() })
	return c.(*net.UnixConn)
}

// roundTrip sends one request and reads its response.
func roundTrip(t *testing.T, c io.ReadWriter, req rawReq) rawResp {
	t.Helper()
	_, err := c.Write(req)
	require.NoError(t, err)
	return readResp(t, c)
}

func readResp(t *testing.T, c io.Reader) rawResp {
	t.Helper()
	resp := make(rawResp, respSize)
	_, err := io.ReadFull(c, resp)
	require.NoError(t, err)
	return resp
}
