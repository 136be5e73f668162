package protocol

// The virtio-sst device's side of the contract that its driver needs, as a Linux driver
// finds it in the uapi header rather than in QEMU's code: the queues, the feature bits and
// what GET_INFO answers. Layer 3 (sstdev) and layer 4 (virtiodev) both take it from here.

// Queue indices of the virtio-sst device. Requests and their responses both travel on
// QueueRequest; QueueResponse exists (the driver sets it up) but is never used;
// QueueEvent carries SSTEvent buffers from device to driver.
const (
	QueueRequest  = 0
	QueueResponse = 1
	QueueEvent    = 2
	// NumQueues is the number of virtqueues of the device.
	NumQueues = 3
	// QueueSize is the maximum (and the reference's only) size of each virtqueue.
	QueueSize = 128
	// MaxQueuePairs is SSTConfig.max_queues: one request queue.
	MaxQueuePairs = 1
)

// Transport feature bits (VirtIO 1.2 §6, Reserved Feature Bits) the device offers besides
// the virtio-sst bits. They live in the same 64-bit feature word, above
// DeviceFeatureMask.
const (
	// FeatureIndirectDesc is VIRTIO_F_INDIRECT_DESC (bit 28).
	FeatureIndirectDesc Feature = 1 << 28
	// FeatureEventIdx is VIRTIO_F_EVENT_IDX (bit 29).
	FeatureEventIdx Feature = 1 << 29
	// FeatureVersion1 is VIRTIO_F_VERSION_1 (bit 32).
	FeatureVersion1 Feature = 1 << 32
)

// Feature sets of the virtio-sst device.
const (
	// BaseFeatures are the virtio-sst capabilities a device always has; it adds
	// FeatureEvents while it is connected to the SST component.
	BaseFeatures = FeatureEcho | FeatureCompute | FeatureMemory | FeatureReset
	// TransportFeatures are the transport bits the device always offers.
	TransportFeatures = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1
	// DeviceFeatureMask selects the device-specific bits (0–23) of a feature word: what
	// GET_INFO reports as capabilities and the config space as features.
	DeviceFeatureMask Feature = 1<<24 - 1
)

// DeviceInfo is the GET_INFO answer of a device whose feature word is caps: the protocol
// version, the device-specific bits of caps, MaxComputeUnits and DeviceMemorySize. The
// virtio-sst device answers GET_INFO itself with its negotiated features; an SST component
// asked directly answers with BaseFeatures.
func DeviceInfo(caps Feature) Info {
	return Info{
		Version:         Version,
		Capabilities:    uint32(caps & DeviceFeatureMask),
		MaxComputeUnits: MaxComputeUnits,
		MemorySize:      DeviceMemorySize,
	}
}
