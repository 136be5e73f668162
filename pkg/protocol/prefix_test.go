package protocol

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncodePrefix checks that a request whose payload is zero beyond n bytes encodes by
// EncodePrefix into a reused buffer exactly as Encode does, over requests of every timing
// kind in turn.
func TestEncodePrefix(t *testing.T) {
	reused := make([]byte, RequestSize)
	var r Request
	for i, set := range []func(){
		func() { r.SetGEMM(GEMM{M: 1, N: 2, K: 3, DtypeSize: 4, AOffset: 5, BOffset: 6}) },
		func() { clear(r.Payload[:32]); r.SetCompute(Compute{ComputeUnits: 1 << 40, LatencyModel: 2}) },
		func() {
			clear(r.Payload[:32])
			r.SetBatchedGEMM(BatchedGEMM{M: 7, N: 8, K: 9, DtypeSize: 4, Batch: 1 << 33})
		},
		func() { r.SetGEMM(GEMM{M: 7, N: 8, K: 9, DtypeSize: 4}) },
	} {
		set()
		r.Flags, r.RequestID, r.UserData = uint32(i), uint64(i)<<32, uint64(i)+1
		want := make([]byte, RequestSize)
		require.NoError(t, r.Encode(want))
		require.NoError(t, r.EncodePrefix(reused, 32))
		require.True(t, bytes.Equal(want, reused), "request %d", i)
	}
	require.Error(t, r.EncodePrefix(reused[:RequestSize-1], 32))
}

// TestDecodePrefix checks that DecodePrefix reads the header and the first n payload bytes
// as Decode does, and leaves the rest of the payload alone.
func TestDecodePrefix(t *testing.T) {
	var in Response
	in.Status, in.RequestID, in.UserData, in.Result = StatusOK, 3, 4, 5
	in.SetGEMM(GEMMResult{Cycles: 10, ComputeCycles: 9, MemoryCycles: 8, MemoryBytes: 7, ResultOffset: 6})
	in.Payload[100] = 0xff
	b := make([]byte, ResponseSize)
	require.NoError(t, in.Encode(b))
	var full, prefix Response
	require.NoError(t, full.Decode(b))
	require.NoError(t, prefix.DecodePrefix(b, 40))
	require.Equal(t, full.GEMM(), prefix.GEMM())
	require.Equal(t, [4]uint64{uint64(full.Status), full.RequestID, full.UserData, full.Result},
		[4]uint64{uint64(prefix.Status), prefix.RequestID, prefix.UserData, prefix.Result})
	require.Zero(t, prefix.Payload[100])
	require.Error(t, prefix.DecodePrefix(b[:ResponseSize-1], 40))
}
