// Package deviceserver is layer 2 of the stack: the device server that, in the reference
// setup, runs inside the QEMU guest. For every operator it computes the real numeric result
// and asks the accelerator, through a character-device handle (/dev/sst0), for its simulated
// timing.
package deviceserver
