//go:build !(goexperiment.simd && amd64) || nosimd

package bench

// readProbe names the loop behind the read roofline.
const readProbe = "portable sum, 8 accumulators"

// sumFloats is a streaming sum with eight independent accumulators, so the
// loop is bound by memory more than by the latency of one add chain.
func sumFloats(x []float32) float32 {
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	n := len(x) &^ 7
	for j := 0; j < n; j += 8 {
		v := x[j : j+8 : j+8]
		s0 += v[0]
		s1 += v[1]
		s2 += v[2]
		s3 += v[3]
		s4 += v[4]
		s5 += v[5]
		s6 += v[6]
		s7 += v[7]
	}
	for _, v := range x[n:] {
		s0 += v
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}
