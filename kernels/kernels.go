// Package kernels holds xent's OpenCL C sources, embedded in the binary.
// Each .cl file opens with a comment explaining its algorithm.
package kernels

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// Source is the OpenCL C 1.2 source of the log-sum-exp, forward and fused
// forward+backward kernels (xent.cl).
//
//go:embed xent.cl
var Source string

// Hash is the SHA-256 of Source, part of the program cache key.
func Hash() string {
	h := sha256.Sum256([]byte(Source))
	return hex.EncodeToString(h[:8])
}
