package sstcomponent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzServeConn feeds arbitrary bytes to ServeConn over net.Pipe. The stream is the input
// zero-padded to whole requests, followed by the input again cut to less than one request
// (so the fuzzer controls both the headers of whole requests and a truncated tail). There
// must be exactly one 4112-byte answer per whole request, carrying its request_id and
// user_data, and then the connection must end cleanly or as truncated, never panic or hang;
// a Direct session (OpenDirect) of an equal component must give the same answers.
func FuzzServeConn(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(newReq(typeNoop, 1)))
	f.Add([]byte(append(gemmReq(1, 4, 16, 8, 4), computeReq(2, 7, 0)...)))
	f.Add([]byte(writeReq(3, 0x0FFFFFFF, []byte{1, 2})))
	f.Add([]byte(readReq(4, 0, 4080)))
	f.Add([]byte(configureReq(5, 1, 0)))
	f.Add([]byte{8, 0, 0, 0, 1})
	f.Add([]byte(append(batchedGEMMReq(6, 64, 64, 64, 4, 1<<40), batchedGEMMReq(7, 1, 1, 1, 1, 0)...)))
	f.Add([]byte(gemmListReq(8, 4, listEntries...)))
	f.Add([]byte(append(gemmListReq(9, 4, listEntry{4, 16, 8, 1}, listEntry{0, 1, 1, 1}), gemmListReq(10, 4).u32(24, 200)...)))
	f.Fuzz(fuzzBody)
}

// fuzzBody is one run of FuzzServeConn.
func fuzzBody(t *testing.T, in []byte) {
	whole := (len(in) + reqSize - 1) / reqSize
	stream := make([]byte, whole*reqSize, whole*reqSize+reqSize)
	copy(stream, in)
	stream = append(stream, in[:len(in)%reqSize]...)

	comp, err := New(Config{Params: tutorialParams()})
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	if err := client.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- comp.ServeConn(context.Background(), server) }()
	written := make(chan error, 1)
	go func() { _, err := client.Write(stream); written <- err }()

	out := make([]byte, whole*respSize)
	if _, err := io.ReadFull(client, out); err != nil {
		t.Fatalf("reading %d answers: %v", whole, err)
	}
	for i := range whole {
		req, resp := stream[i*reqSize:], rawResp(out[i*respSize:])
		if resp.requestID() != le.Uint64(req[offRequestID:]) || resp.userData() != le.Uint64(req[offUserData:]) {
			t.Fatalf("answer %d carries request_id %#x user_data %#x", i, resp.requestID(), resp.userData())
		}
		if s := resp.status(); s != statusOK && s != statusInvalid {
			t.Fatalf("answer %d has status %d", i, s)
		}
		if typeOf(req) == typeGEMMList && resp.status() == statusOK {
			// At most the entries the list counts, each 32 bytes, nothing after them.
			n := resp.result()
			if count := uint64(le.Uint32(req[offReqPayload:])); n > count || n > 127 {
				t.Fatalf("answer %d: %d entries answered of a list of %d", i, n, count)
			}
			if tail := resp[offRespPayload+32*n : respSize]; bytes.Count(tail, []byte{0}) != len(tail) {
				t.Fatalf("answer %d: bytes after its %d entries", i, n)
			}
		}
	}
	// A Direct session of an equal component answers every request byte for byte alike.
	twin, err := New(Config{Params: tutorialParams()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := twin.OpenDirect()
	if err != nil {
		t.Fatal(err)
	}
	direct := make([]byte, respSize)
	for i := range whole {
		if r := stream[i*reqSize : (i+1)*reqSize]; !d.Handle(typeOf(r), r, direct) {
			t.Fatalf("Direct refused request %d", i)
		}
		if !bytes.Equal(direct, out[i*respSize:(i+1)*respSize]) {
			t.Fatalf("answer %d: Direct and ServeConn differ", i)
		}
	}
	_ = d.Close()
	// Once the whole stream is consumed, close. Any further answer would block
	// ServeConn's write and turn into a write error.
	if err := <-written; err != nil {
		t.Fatalf("writing the stream: %v", err)
	}
	client.Close()
	select {
	case err := <-done:
		var te *TruncatedError
		if err != nil && !errors.As(err, &te) {
			t.Fatalf("ServeConn: %v", err)
		}
		if len(in)%reqSize != 0 && te == nil {
			t.Fatalf("a %d-byte tail was not reported as truncated (err %v)", len(in)%reqSize, err)
		}
	case <-time.After(testTimeout):
		t.Fatal("ServeConn did not return")
	}
}
