// Package layering holds the test that keeps sstemu's imports in a straight line: each of
// the five layer packages imports only its neighbour below, plus the shared packages
// protocol, perfmodel and linalg. Only cmd/sstemu and pkg/stack, which wire the layers
// together, may import them all. The package has no code of its own.
package layering
