package sstcomponent

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/perfmodel"
)

// listEntries is a GEMM_LIST mixing single GEMMs and batches, squares and thin shapes.
var listEntries = []listEntry{
	{4, 16, 8, 1}, {1024, 1024, 1024, 1}, {64, 64, 64, 12}, {1, 4096, 4096, 1},
	{128, 11008, 4096, 3}, {7, 3, 5, 1 << 20}, {4, 16, 8, 1},
}

// TestGEMMListAnswersAsSeparateRequests: on every preset, each entry of a GEMM_LIST is
// answered exactly as the GEMM (batch 1) or BATCHED_GEMM of its shape sent alone to an
// equal component, and the two components end with the same clock and GEMM statistics.
func TestGEMMListAnswersAsSeparateRequests(t *testing.T) {
	for _, p := range perfmodel.Presets() {
		t.Run(p.Name, func(t *testing.T) {
			cfg := Config{Model: p.Model, Params: p.Params}
			listed, alone := newDirect(t, cfg), newDirect(t, cfg)
			resp := make([]byte, respSize)
			req := gemmListReq(1, 4, listEntries...)
			require.True(t, listed.d.Handle(typeGEMMList, req, resp))
			list := rawResp(resp)
			require.Equal(t, uint32(statusOK), list.status())
			require.Equal(t, uint64(len(listEntries)), list.result(), "every entry answered")
			one := make([]byte, respSize)
			for i, e := range listEntries {
				single := gemmReq(uint64(2+i), e.m, e.n, e.k, 4)
				if e.batch > 1 {
					single = batchedGEMMReq(uint64(2+i), e.m, e.n, e.k, 4, e.batch)
				}
				require.True(t, alone.d.Handle(typeOf(single), single, one))
				r := rawResp(one)
				require.Equal(t, uint32(statusOK), r.status(), "entry %d alone", i)
				at := offRespPayload + 32*i
				assert.Equal(t, []byte(r[offRespPayload:offRespPayload+32]), []byte(list[at:at+32]), "entry %d: cycles, compute, memory, bytes", i)
			}
			assertZeros(t, list[offRespPayload+32*len(listEntries):], "nothing after the answered entries")
			ls, as := listed.c.Stats(), alone.c.Stats()
			assert.Equal(t, as.SimCycles, ls.SimCycles, "the clock advanced as by the separate requests")
			assert.Equal(t, as.GEMM, ls.GEMM, "GEMM statistics as for the separate requests")
			assert.Equal(t, uint64(1), ls.Requests[typeGEMMList])
		})
	}
}

// TestGEMMListStops: the answer stops at the first entry the model cannot answer, with
// result the entries before it; a bad header is INVALID as a whole.
func TestGEMMListStops(t *testing.T) {
	ok := listEntry{4, 16, 8, 1}
	tests := []struct {
		name   string
		req    rawReq
		status uint32
		result uint64
	}{
		{"all answered", gemmListReq(1, 4, ok, ok), statusOK, 2},
		{"zero M", gemmListReq(1, 4, ok, listEntry{0, 16, 8, 1}, ok), statusOK, 1},
		{"zero batch", gemmListReq(1, 4, ok, ok, listEntry{4, 16, 8, 0}), statusOK, 2},
		{"overflow", gemmListReq(1, 4, listEntry{1 << 31, 1 << 31, 1 << 31, 1 << 40}, ok), statusOK, 0},
		{"reserved set", gemmListReq(1, 4, ok, ok).u32(32+24+12, 1), statusOK, 1},
		{"count 0", gemmListReq(1, 4), statusInvalid, 0},
		{"count 128", gemmListReq(1, 4).u32(24, 128), statusInvalid, 0},
		{"count 0xffffffff", gemmListReq(1, 4).u32(24, 0xffffffff), statusInvalid, 0},
		{"dtype 0", gemmListReq(1, 0, ok), statusInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newDirect(t, Config{})
			resp := make([]byte, respSize)
			require.True(t, s.d.Handle(typeGEMMList, tt.req, resp))
			r := rawResp(resp)
			assert.Equal(t, tt.status, r.status())
			assert.Equal(t, tt.result, r.result())
			assertZeros(t, r[offRespPayload+32*int(tt.result):], "nothing after the answered entries")
			if tt.result > 0 {
				assert.Equal(t, uint64(16), r.u64(offRespPayload), "the first entry's cycles (4×16×8 on the tutorial roofline)")
			}
			st := s.c.Stats()
			assert.Equal(t, tt.result, st.GEMM.Cycles.Count, "one GEMM counted per answered entry")
		})
	}
}

// directSession is a component with one Direct session.
type directSession struct {
	c *Component
	d *Direct
}

// newDirect starts a component with cfg (the tutorial roofline when cfg has no
// parameters) and opens a Direct session on it.
func newDirect(t *testing.T, cfg Config) directSession {
	t.Helper()
	if cfg.Params == (perfmodel.Params{}) {
		cfg.Model, cfg.Params = perfmodel.KindRoofline, tutorialParams()
	}
	c, err := New(cfg)
	require.NoError(t, err)
	d, err := c.OpenDirect()
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return directSession{c, d}
}

// assertZeros fails unless every byte of b is zero.
func assertZeros(t *testing.T, b []byte, msg string) {
	t.Helper()
	if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("%s: byte %d of %d is not zero", msg, i, len(b))
	}
}
