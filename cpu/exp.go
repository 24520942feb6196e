package cpu

import "math"

// Constants of the portable exp: a table of 2^(j/1024) and a linear term
// on the remainder, in float64.
const (
	expN     = 1024
	expScale = expN / math.Ln2        // n = round(d·expScale)
	expStep  = math.Ln2 / expN        // r = d - n·expStep ∈ [-expStep/2, expStep/2]
	expMag   = 1.5 * (1 << 52)        // adding it rounds to an integer kept in the low mantissa bits
	expMin   = -700.0                 // below: clamped (e^-700 is 0 in float32, normal in float64)
	expEps   = expStep * expStep / 24 // the mean of r²/2: the linear term is unbiased
)

// expTab[j] holds the bits of 2^(j/1024)·(1 + expEps) less j<<42: adding
// the bits of t << 42 (t = n + 1.5·2^52, n = 1024k + j) then adds k to
// the exponent.
var expTab = func() (t [expN]uint64) {
	for j := range t {
		t[j] = math.Float64bits(math.Exp2(float64(j)/expN)*(1+expEps)) - uint64(j)<<42
	}
	return t
}()

// exp64 returns e^d for d in [-700, 88.8] within 4e-8 relative (under
// half a float32 ulp for most d), e^-700 below -700 and for -Inf, NaN for
// NaN:
//
//	n = round(d·1024/ln2) = 1024k + j,  r = d - n·ln2/1024 ∈ [-3.4e-4, 3.4e-4]
//	e^d = 2^k · 2^(j/1024)(1+ε) · (1 + r)
//
// The linear term falls short by r²/2 ≤ 5.8e-8; ε = 1.9e-8, folded into
// the table, is its mean over r, so the error is in [-3.9e-8, 1.9e-8] with
// no bias in sums of many exps. The rest is float64 rounding. n is read from
// the bits of t = d·1024/ln2 + 1.5·2^52: their low 10 bits index the table
// and (bits<<42) adds k to the entry's exponent. It is one table lookup,
// a handful of float64 operations and no division, so that it inlines and
// runs at about 2 GB/s of float32 input per core.
func exp64(d float64) float64 {
	if d < expMin {
		d = expMin
	}
	t := d*expScale + expMag
	b := math.Float64bits(t)
	e := math.Float64frombits(expTab[b&(expN-1)] + b<<42)
	return e + e*(d-(t-expMag)*expStep)
}

// exp32 returns e^x rounded to float32 (see exp64), within 1.5 ulp for x
// in [-87.3, 88.7] (1.12 measured): a subnormal below -87.3, 0 below -104
// and for -Inf; NaN stays NaN.
func exp32(x float32) float32 { return float32(exp64(float64(x))) }

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
