package sstdev_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/sstemu/sstemu/pkg/sstdev"
)

// FuzzWrite writes arbitrary bytes to the device, as any program may, and checks the
// driver's contract: a write consumes whole 4104-byte requests and fails with EINVAL on a
// shorter remainder; every request is answered (whatever its type, by the device or by
// layer 5) with the next request id and the request's own user_data.
func FuzzWrite(f *testing.F) {
	var l5 fakeL5
	r := newRig(f, sstdev.Config{}, l5.serve)
	f.Add([]byte{})
	f.Add(make([]byte, reqSize-1))
	f.Add(computeRequest(7, 3))
	f.Add(gemmRequest(1, 4, 16, 8, 4))
	f.Add(request(0xFFFF_FFFF, 1, 2))
	f.Add(append(request(typeEcho, 1, 2), request(typeReset, 3, 4)...))
	f.Add(append(computeRequest(5, 6), 1, 2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := r.dev.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		before := r.dev.Stats().Writes
		whole := len(data) / reqSize
		n, err := file.Write(data)
		if n != whole*reqSize {
			t.Fatalf("Write(%d bytes) = %d, want %d", len(data), n, whole*reqSize)
		}
		if rem := len(data) % reqSize; (rem != 0 || len(data) == 0) != errors.Is(err, syscall.EINVAL) {
			t.Fatalf("Write(%d bytes): error %v", len(data), err)
		} else if rem == 0 && len(data) > 0 && err != nil {
			t.Fatalf("Write(%d bytes): %v", len(data), err)
		}
		buf := make([]byte, respSize)
		n, err = file.Read(buf)
		if whole == 0 {
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatalf("Read after no request: %d, %v", n, err)
			}
			return
		}
		if err != nil || n != respSize {
			t.Fatalf("Read: %d, %v", n, err)
		}
		resp := parseResponse(buf)
		last := data[(whole-1)*reqSize:]
		if want := uint64(before) + uint64(whole); resp.requestID != want {
			t.Fatalf("request_id %d, want %d", resp.requestID, want)
		}
		if want := le.Uint64(last[offUserData:]); resp.user != want {
			t.Fatalf("user_data %#x, want %#x", resp.user, want)
		}
	})
}
