package cpu

import "math"

// Constants of the float32 exp: a 64-entry table of 2^(j/64) and a cubic on
// the remainder, with Cody–Waite range reduction.
const (
	k64      = 64 * 1.44269504088896341 // 64/ln 2
	ln2Hi64  = 0.693359375 / 64         // ln2/64 split in two: Hi·k is exact for |k| < 2^15
	ln2Lo64  = -2.12194440e-4 / 64
	roundMag = 12582912.0 // 1.5·2^23: adding it rounds to an integer kept in the low mantissa bits
	expLo    = -87.33     // below: the result would be subnormal; it is flushed to 0
)

// exp2Table[j] holds the bits of 2^(j/64).
var exp2Table = func() (t [64]uint32) {
	for j := range t {
		t[j] = math.Float32bits(float32(math.Exp2(float64(j) / 64)))
	}
	return t
}()

// exp32 returns e^x within 3 ulp for x in [-87.33, 88.3]: 0 below (where
// the result would be subnormal: an absolute error under 1.2e-38), -Inf
// gives exactly 0 and NaN stays NaN. The kernels call it with x = z - max
// ≤ 0; above 88.3 the result is undefined.
//
//	k = round(x·64/ln 2),  r = x - k·ln2/64 ∈ [-ln2/128, ln2/128]
//	e^x = 2^(k>>6) · 2^((k&63)/64) · (1 + r + r²/2 + r³/6)
//
// The cubic's truncation error is below r⁴/24 < 4e-11; the rest is float32
// rounding. k is read from the bits of t = x·64/ln2 + 1.5·2^23, which are
// 0x4B400000 + k: their low 6 bits index the table, and (bits>>6)<<23 adds
// k>>6 to the table entry's exponent (the 0x4B4 part shifts out). The
// function is kept within the compiler's inlining budget.
func exp32(x float32) float32 {
	if x < expLo {
		return 0
	}
	t := x*k64 + roundMag
	kf := t - roundMag
	r := x - kf*ln2Hi64 - kf*ln2Lo64
	b := math.Float32bits(t)
	return (1 + r*(1+r*(0.5+r*(1.0/6)))) * math.Float32frombits(exp2Table[b&63]+(b>>6)<<23)
}

// tanh32 returns tanh(y) to about 3e-7 relative: a Taylor series to y¹¹
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
