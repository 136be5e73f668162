package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// Each decoder must either reject its input with a *DecodeError or decode it into a value
// that encodes back to the very same bytes.
func FuzzRequestDecode(f *testing.F) {
	f.Add(make([]byte, RequestSize))
	f.Add(make([]byte, 4096))
	g := &Request{RequestID: 3}
	g.SetGEMM(GEMM{M: 4, N: 16, K: 8, DtypeSize: 4})
	b, _ := g.MarshalBinary()
	f.Add(b)
	g.SetBatchedGEMM(BatchedGEMM{M: 4, N: 16, K: 8, DtypeSize: 4, Batch: 12})
	b, _ = g.MarshalBinary()
	f.Add(b)
	g.SetGEMMListHeader(2, 4)
	g.SetGEMMListEntry(0, GEMMListEntry{M: 4, N: 16, K: 8, Batch: 1})
	g.SetGEMMListEntry(1, GEMMListEntry{M: 1, N: 4096, K: 4096, Batch: 3})
	b, _ = g.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		if err := r.Decode(in); err != nil {
			if len(in) == RequestSize {
				t.Fatalf("rejected a %d-byte request: %v", len(in), err)
			}
			return
		}
		_ = r.String()
		if bg, err := r.CheckBatchedGEMM(); err == nil {
			if r.Type != ReqBatchedGEMM || bg.M == 0 || bg.N == 0 || bg.K == 0 || bg.DtypeSize == 0 || bg.Batch == 0 {
				t.Fatalf("accepted %+v of type %s", bg, r.Type)
			}
		} else if r.Type == ReqBatchedGEMM && !errors.As(err, new(*DecodeError)) {
			t.Fatalf("error %T, want *DecodeError", err)
		}
		if h, err := r.CheckGEMMList(); err == nil {
			if r.Type != ReqGEMMList || h.Count == 0 || h.Count > MaxGEMMListEntries || h.DtypeSize == 0 {
				t.Fatalf("accepted %+v of type %s", h, r.Type)
			}
			for i := range int(h.Count) {
				if e, err := r.CheckGEMMListEntry(i); err == nil && (e.M == 0 || e.N == 0 || e.K == 0 || e.Batch == 0) {
					t.Fatalf("accepted entry %d %+v", i, e)
				} else if err != nil && !errors.As(err, new(*DecodeError)) {
					t.Fatalf("entry %d: error %T, want *DecodeError", i, err)
				}
			}
		} else if r.Type == ReqGEMMList && !errors.As(err, new(*DecodeError)) {
			t.Fatalf("error %T, want *DecodeError", err)
		}
		if r.Type == ReqWrite {
			if d, err := r.WriteData(); err == nil && len(d) > MaxWriteData {
				t.Fatalf("write data %d bytes", len(d))
			}
		}
		out, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("round trip changed the bytes (err %v)", err)
		}
	})
}

func FuzzResponseDecode(f *testing.F) {
	f.Add(make([]byte, ResponseSize))
	f.Add(make([]byte, RequestSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r, prefix Response
		errPrefix := prefix.DecodePrefix(in, 40)
		if err := r.Decode(in); err != nil {
			if errPrefix == nil {
				t.Fatalf("DecodePrefix took what Decode refused: %v", err)
			}
			return
		}
		if errPrefix != nil || prefix.GEMM() != r.GEMM() || prefix.Status != r.Status || prefix.UserData != r.UserData {
			t.Fatalf("DecodePrefix disagrees with Decode (err %v)", errPrefix)
		}
		_ = r.String()
		_, _, _ = r.GEMM(), r.Info(), r.Compute()
		out, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("round trip changed the bytes (err %v)", err)
		}
	})
}

func FuzzConfigEventDecode(f *testing.F) {
	f.Add(make([]byte, ConfigSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c ConfigSpace
		if c.Decode(in) == nil {
			_ = c.String()
			out := make([]byte, ConfigSize)
			if c.Encode(out) != nil || !bytes.Equal(out, in) {
				t.Fatal("config round trip changed the bytes")
			}
		}
		var e Event
		if e.Decode(in) == nil {
			_ = e.String()
			out := make([]byte, EventSize)
			if e.Encode(out) != nil || !bytes.Equal(out, in) {
				t.Fatal("event round trip changed the bytes")
			}
		}
	})
}
