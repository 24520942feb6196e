// Package kernels holds xent's OpenCL C sources, embedded in the binary.
// Each .cl file opens with a comment explaining its algorithm.
package kernels

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"
)

var (
	//go:embed xent.cl
	common string
	//go:embed elem.cl
	elem string
	//go:embed rows.cl
	rows string
	//go:embed linear.cl
	linear string
)

// Types are the element types of the row kernels, by ELEM_ID (elem.cl):
// each kernel's name has the type's suffix ("xent_ce_bf16").
var Types = []string{"f32", "bf16", "f16"}

// Source is the OpenCL C 1.2 source of the log-sum-exp, forward and fused
// forward+backward kernels: xent.cl, then rows.cl once per element type
// after elem.cl with its ELEM_ID.
var Source = typed(rows)

// LinearSource is the OpenCL C 1.2 source of the fused linear
// cross-entropy's kernels (linear.cl, built on demand: see its opening
// comment): xent.cl, then linear.cl once per element type, as Source.
var LinearSource = typed(linear)

// typed returns xent.cl followed by body once per element type, each
// after elem.cl with its ELEM_ID.
func typed(body string) string {
	var b strings.Builder
	b.WriteString(common)
	for id, t := range Types {
		fmt.Fprintf(&b, "\n/* ---- %s ---- */\n#undef ELEM_ID\n#define ELEM_ID %d\n", t, id)
		b.WriteString(elem)
		b.WriteString(body)
	}
	return b.String()
}

// Hash is the SHA-256 of Source, part of the program cache key.
func Hash() string { return hashOf(Source) }

// LinearHash is the SHA-256 of LinearSource.
func LinearHash() string { return hashOf(LinearSource) }

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}
