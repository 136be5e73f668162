package virtiodev

import (
	"encoding/binary"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Route says who answers a request type.
type Route uint8

// Routes of the routing table.
const (
	// RouteDevice: the device answers by itself (NOOP, ECHO, GET_INFO, RESET).
	RouteDevice Route = iota
	// RouteForward: the request goes to the SST component (COMPUTE, READ, WRITE,
	// CONFIGURE, GEMM, BATCHED_GEMM, GEMM_LIST).
	RouteForward
	// RouteInvalid: unknown type, answered INVALID by the device.
	RouteInvalid
)

// String names the route.
func (r Route) String() string {
	switch r {
	case RouteDevice:
		return "device"
	case RouteForward:
		return "forward"
	default:
		return "invalid"
	}
}

// RouteOf returns the route of a request type. Unlike the reference device, which answers
// GEMM INVALID, sstemu forwards GEMM, BATCHED_GEMM and GEMM_LIST to the SST component
// like COMPUTE;
// whether the component knows them only its answer tells (GET_INFO has no bit for them:
// the device cannot know what is behind its link).
func RouteOf(t protocol.RequestType) Route {
	switch t {
	case protocol.ReqNoop, protocol.ReqEcho, protocol.ReqGetInfo, protocol.ReqReset:
		return RouteDevice
	case protocol.ReqCompute, protocol.ReqRead, protocol.ReqWrite, protocol.ReqConfigure, protocol.ReqGEMM, protocol.ReqBatchedGEMM, protocol.ReqGEMMList:
		return RouteForward
	default:
		return RouteInvalid
	}
}

// requestType reads SSTRequest.type from an encoded request of at least 4 bytes.
func requestType(req []byte) protocol.RequestType {
	return protocol.RequestType(binary.LittleEndian.Uint32(req[protocol.RequestTypeOffset:]))
}

// answerer builds the responses the device gives by itself. It owns a scratch structure,
// so each goroutine that answers needs its own.
type answerer struct {
	resp protocol.Response
}

// answer writes into out (ResponseSize bytes) the device's own answer to the complete
// encoded request in, for RouteDevice and RouteInvalid types; caps is the negotiated
// feature word. Only GET_INFO's goes through a protocol.Response; the others are a status,
// the request's ids and either zeros or, for ECHO, the request's payload, written in place.
func (a *answerer) answer(in, out []byte, caps protocol.Feature) {
	switch requestType(in) {
	case protocol.ReqNoop, protocol.ReqReset:
		statusResponse(out, protocol.StatusOK, in)
	case protocol.ReqEcho:
		statusResponse(out[:protocol.ResponseHeaderSize], protocol.StatusOK, in)
		copy(out[protocol.ResponseHeaderSize:protocol.ResponseSize], in[protocol.RequestHeaderSize:protocol.RequestSize])
	case protocol.ReqGetInfo:
		a.resp = protocol.Response{
			Status:    protocol.StatusOK,
			RequestID: binary.LittleEndian.Uint64(in[protocol.RequestIDOffset:]),
			UserData:  binary.LittleEndian.Uint64(in[protocol.RequestUserDataOffset:]),
		}
		a.resp.SetInfo(protocol.DeviceInfo(caps))
		_ = a.resp.Encode(out) // out is exactly ResponseSize long
	default:
		statusResponse(out, protocol.StatusInvalid, in)
	}
}

// statusResponse writes into out (ResponseSize bytes) a response carrying only status st
// and the request_id and user_data of the encoded request prefix in; a field that in is
// too short to hold whole stays zero.
func statusResponse(out []byte, st protocol.Status, in []byte) {
	clear(out)
	binary.LittleEndian.PutUint32(out[protocol.ResponseStatusOffset:], uint32(st))
	for off := protocol.RequestIDOffset; off < protocol.RequestIDOffset+protocol.IDsSize; off += 8 {
		if len(in) >= off+8 {
			copy(out[off:off+8], in[off:off+8])
		}
	}
}
