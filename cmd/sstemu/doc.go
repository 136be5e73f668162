// Command sstemu runs the PyTorch → /dev/sst0 → virtqueue → virtio-sst → SST stack in one
// process, or any single layer of it against the real neighbours.
package main
