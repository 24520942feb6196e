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
)

// Types are the element types of the row kernels, by ELEM_ID (elem.cl):
// each kernel's name has the type's suffix ("xent_ce_bf16").
var Types = []string{"f32", "bf16", "f16"}

// Source is the OpenCL C 1.2 source of the log-sum-exp, forward and fused
// forward+backward kernels: xent.cl, then rows.cl once per element type
// after elem.cl with its ELEM_ID.
var Source = func() string {
	var b strings.Builder
	b.WriteString(common)
	for id, t := range Types {
		fmt.Fprintf(&b, "\n/* ---- %s ---- */\n#undef ELEM_ID\n#define ELEM_ID %d\n", t, id)
		b.WriteString(elem)
		b.WriteString(rows)
	}
	return b.String()
}()

// Hash is the SHA-256 of Source, part of the program cache key.
func Hash() string {
	h := sha256.Sum256([]byte(Source))
	return hex.EncodeToString(h[:8])
}
