//go:build goexperiment.simd && amd64 && !nosimd

package bench

import "simd/archsimd"

// readProbe names the loop behind the read roofline.
const readProbe = "archsimd sum, 4×8 lanes"

// sumFloats is a streaming sum on four 8-lane accumulators (AVX), bound by
// memory bandwidth.
func sumFloats(x []float32) float32 {
	var a0, a1, a2, a3 archsimd.Float32x8
	n := len(x) &^ 31
	for j := 0; j < n; j += 32 {
		a0 = a0.Add(archsimd.LoadFloat32x8Slice(x[j:]))
		a1 = a1.Add(archsimd.LoadFloat32x8Slice(x[j+8:]))
		a2 = a2.Add(archsimd.LoadFloat32x8Slice(x[j+16:]))
		a3 = a3.Add(archsimd.LoadFloat32x8Slice(x[j+24:]))
	}
	var l [8]float32
	a0.Add(a1).Add(a2.Add(a3)).Store(&l)
	s := l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7]
	for _, v := range x[n:] {
		s += v
	}
	return s
}
