//go:build !race

package opencl_test

// raceDetector is whether the tests run under the race detector.
const raceDetector = false
