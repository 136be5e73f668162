package deviceserver

import (
	"errors"
	"os"
	"strconv"
	"syscall"
)

// UntimedCause says why an op came back without its timing. Its String is a stable
// snake_case name, meant for logs, the per-cause counters of Stats and the wire; a name
// never changes meaning once released, and new causes are only appended:
//
//	""                    UntimedNone: the op was timed
//	"no_device"           the server has no device to time on
//	"closed"              the server was closed (shutdown) before or while timing
//	"canceled"            the op's context ended while it waited for a device handle
//	"device_unavailable"  the device file cannot be opened or was removed (ENODEV)
//	"link_down"           the device answered NO_DEVICE: it has no link to the SST component
//	"timeout"             the driver's timeout expired (ETIMEDOUT) or the device answered TIMEOUT
//	"device_error"        any other device failure: an I/O error, a malformed or mismatched
//	                      response, a status other than OK, NO_DEVICE and TIMEOUT
//	"overflow"            the op's total cycles or bytes do not fit in 64 bits
//	"invalid_shape"       a GEMM does not fit the device's 32-bit dimensions
type UntimedCause uint8

// The causes of an untimed op, in the order of the list above.
const (
	UntimedNone UntimedCause = iota
	UntimedNoDevice
	UntimedClosed
	UntimedCanceled
	UntimedDeviceUnavailable
	UntimedLinkDown
	UntimedTimeout
	UntimedDeviceError
	UntimedOverflow
	UntimedInvalidShape
	numUntimedCauses
)

// UntimedRefused marks, inside the server, a timing request answered INVALID; it is
// reported as UntimedDeviceError (or leads to the COMPUTE fallback), never exported.
const UntimedRefused = numUntimedCauses + 1

var untimedNames = [numUntimedCauses]string{
	UntimedNone:              "",
	UntimedNoDevice:          "no_device",
	UntimedClosed:            "closed",
	UntimedCanceled:          "canceled",
	UntimedDeviceUnavailable: "device_unavailable",
	UntimedLinkDown:          "link_down",
	UntimedTimeout:           "timeout",
	UntimedDeviceError:       "device_error",
	UntimedOverflow:          "overflow",
	UntimedInvalidShape:      "invalid_shape",
}

// String returns the cause's stable name ("" for UntimedNone).
func (c UntimedCause) String() string {
	if c < numUntimedCauses {
		return untimedNames[c]
	}
	return "cause(" + strconv.Itoa(int(c)) + ")"
}

// MarshalText lets UntimedCause be a JSON map key (Stats.UntimedByCause).
func (c UntimedCause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UntimedCauses lists every cause of an untimed op (UntimedNone excluded), in order, for
// callers that export counters.
func UntimedCauses() []UntimedCause {
	causes := make([]UntimedCause, 0, numUntimedCauses-1)
	for c := UntimedNone + 1; c < numUntimedCauses; c++ {
		causes = append(causes, c)
	}
	return causes
}

// errServerClosed is the detail of an op untimed because the server was closed.
var errServerClosed = errors.New("device server closed")

// deviceCause classifies an error of the device file (open, write or read) the way the
// driver reports it: an errno inside an *os.PathError, for the emulated and the real device.
func deviceCause(err error) UntimedCause {
	switch {
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded):
		return UntimedTimeout
	case errors.Is(err, syscall.ENODEV), errors.Is(err, os.ErrNotExist):
		return UntimedDeviceUnavailable
	case errors.Is(err, syscall.EINTR), errors.Is(err, os.ErrClosed):
		// The handle was closed under the op: the server is shutting down.
		return UntimedClosed
	default:
		return UntimedDeviceError
	}
}
