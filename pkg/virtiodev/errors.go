package virtiodev

import (
	"errors"
	"fmt"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// ErrClosed is returned by calls on a Device after Close or Shutdown.
var ErrClosed = errors.New("virtiodev: device closed")

// ErrAttached is returned by Attach and AckFeatures while queues are attached: features
// are negotiated and queues set up once per device reset (VirtIO 1.x §3.1.1).
var ErrAttached = errors.New("virtiodev: queues already attached (Reset first)")

// FeatureError reports a feature acknowledgement with bits the device does not offer.
type FeatureError struct {
	Acked     protocol.Feature // what the driver acknowledged
	Supported protocol.Feature // every bit the device may offer
}

// Error implements error.
func (e *FeatureError) Error() string {
	return fmt.Sprintf("virtiodev: driver acknowledged features %s that the device does not offer (offers at most %s)",
		e.Acked&^e.Supported, e.Supported)
}

// ConfigError reports an invalid Config field passed to New.
type ConfigError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("virtiodev: config %s: %s", e.Field, e.Reason)
}

// QueueError reports a queue layout that Attach refused.
type QueueError struct {
	Queue int   // queue index (protocol.QueueRequest, protocol.QueueResponse or protocol.QueueEvent)
	Err   error // why
}

// Error implements error.
func (e *QueueError) Error() string {
	return fmt.Sprintf("virtiodev: queue %d: %v", e.Queue, e.Err)
}

// Unwrap returns the underlying error.
func (e *QueueError) Unwrap() error { return e.Err }
