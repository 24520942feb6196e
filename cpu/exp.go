package cpu

import "math"

// Constants of the float32 exp: Cephes expf, Cody–Waite range reduction.
const (
	log2e    = 1.44269504088896341
	ln2Hi    = 0.693359375
	ln2Lo    = -2.12194440e-4
	roundMag = 12582912.0 // 1.5·2^23: adding it rounds to an integer kept in the low mantissa bits

	expC5 = 1.9875691500e-4
	expC4 = 1.3981999507e-3
	expC3 = 8.3334519073e-3
	expC2 = 4.1665795894e-2
	expC1 = 1.6666665459e-1
	expC0 = 5.0000001201e-1
)

// exp32 returns e^x within 2 ulp for x in [-87.3, 88.3]. The kernels call it
// with x = z - max ≤ 0; results below e^-87.3 (subnormal) may be flushed to 0,
// -Inf gives exactly 0 and NaN stays NaN. Above 88.3 the result is undefined.
//
//	n = round(x·log2 e),  r = x - n·ln 2 ∈ [-ln2/2, ln2/2]
//	e^x = 2^n · (1 + r + r²·P(r))
//
// 2^n is built in the exponent bits: the bits of t = x·log2e + 1.5·2^23 are
// 0x4B400000 + n, and (bits+127)<<23 shifts the 0x4B4 part out. Instead of a
// branch x is clamped to -88, where n = -127 makes that scale exactly +0; the
// builtin max keeps NaN. The function is kept within the inlining budget.
func exp32(x float32) float32 {
	if x < -88 {
		x = -88
	}
	t := x*log2e + roundMag
	n := t - roundMag
	r := x - n*ln2Hi - n*ln2Lo
	return ((((((expC5*r+expC4)*r+expC3)*r+expC2)*r+expC1)*r+expC0)*r*r + r + 1) *
		math.Float32frombits((math.Float32bits(t)+127)<<23)
}

// tanh32 returns tanh(y) to about 1e-7 relative: a Taylor series to y¹¹
// for |y| < 0.3, (1-e)/(1+e) with e = exp(-2|y|) above. NaN stays NaN.
func tanh32(y float32) float32 {
	a := y
	if a < 0 {
		a = -a
	}
	if a < 0.3 {
		y2 := y * y
		return y * (1 + y2*(-1.0/3+y2*(2.0/15+y2*(-17.0/315+y2*(62.0/2835+y2*(-1382.0/155925))))))
	}
	e := exp32(-2 * a)
	t := (1 - e) / (1 + e)
	if y < 0 {
		return -t
	}
	return t
}
