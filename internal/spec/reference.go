// Package spec is the semantic specification of xent as code: a float64
// reference built on gonum, and one table of cases that every device and
// kernel implementation must pass (see Run).
package spec

import (
	"math"

	"github.com/xentlab/xent/batch"

	"gonum.org/v1/gonum/floats"
)

// DefaultIgnore is PyTorch's ignore_index.
const DefaultIgnore = -100

// Opts are the options of a reference evaluation.
type Opts struct {
	Ignore    int64 // ignore index
	Smoothing float64
	ZLoss     float64
	Softcap   float64
	// Temperature τ > 0 divides the capped logits (0: none, as 1).
	Temperature float64
	Weights     []float32
}

// TempScale returns the temperature's 1/τ as the devices take it
// (ce.Problem.TempScale: 1/τ in float32), 1 without one.
func (o *Opts) TempScale() float64 {
	if o.Temperature == 0 || float32(o.Temperature) == 1 {
		return 1
	}
	return float64(1 / float32(o.Temperature))
}

// tau returns τ, 1 without a temperature.
func (o *Opts) tau() float64 {
	if o.Temperature == 0 {
		return 1
	}
	return o.Temperature
}

// Computed reports whether the logits the loss sees are computed from the
// inputs (a soft cap or a temperature) rather than the inputs themselves:
// their rounding, a few ulps of each logit, widens the tolerances.
func (o *Opts) Computed() bool { return o.Softcap > 0 || o.TempScale() != 1 }

// Ref is a float64 reference result.
type Ref struct {
	Loss    []float64 // per row, 0 for ignored rows
	LSE     []float64 // per row (NaN for ignored rows)
	Correct []bool
	Conf    []float64 // per row, the largest softmax probability exp(max z - lse) (NaN for ignored and NaN rows)
	// Greater is per row how many logits are strictly greater than the
	// target's, Near how many others are close enough to it that the
	// devices' rounding may order them either way (where the logits are
	// computed: a soft cap, a temperature, the fused linear's products),
	// Entropy the softmax's -Σ p log p (NaN for ignored rows).
	Greater, Near []int64
	Entropy       []float64
	Sum           float64
	Denom         float64
	Counted       int64
	ZLoss         float64
	Grad          [][]float64 // dL_i/dz_i per row, unscaled (s_i = 1)
	// Mag is the size of the terms of each Grad entry: the sum of their
	// absolute values (with a soft cap, times 1 + (z_j/c)² for the factor
	// 1 - (z_j/c)²; at the target, p_t is added to |p_t - 1|, and the
	// z-loss term counts |lse| + 1, see below). Computed in float32, an entry is off by a few ulps of
	// Mag, not of itself: Mag is |Grad| where nothing cancels (no
	// smoothing, z-loss or soft cap), and the yardstick of GradClose.
	Mag [][]float64
	// Under is, for the entries whose softmax term p_j is below 2^-125
	// (float32's subnormals, with a factor 2 of margin for the device's
	// rounding of z_j - lse), the absolute error their float32 exp may
	// bring: 2^-126 on p_j (a subnormal off by up to that on the CPU's
	// vector exp, or flushed to 0 where OpenCL's float has no subnormals),
	// times p_j's coefficient and the chain factor; nil rows and 0
	// elsewhere. GradClose's rule for results below 2^-126 misses it where
	// a coefficient or a scale above 1 carries such an error past 2^-126.
	Under [][]float64
	// Slack is per row the absolute error of the loss that float32
	// differences bring, which no float32 kernel avoids: each z_j - m
	// (and m - z_t) rounded, and one more rounding of a scaled argument
	// (exp through exp2), each within an ulp of the difference d, moves
	// e^d by |d|·2^-23 relative at most. For a confident row (loss ≈
	// 1 - p_t, its terms e^d at d ≈ -30) that is near 2e-6 of the loss,
	// above LossTol; elsewhere it is below it. SumSlack is their sum.
	Slack    []float64
	SumSlack float64
}

// LossClose reports whether got matches row i's loss: LossCloseIn within
// rel, plus the row's Slack.
func (r *Ref) LossClose(i int, got, rel float64) bool {
	return lossClose(got, r.Loss[i], rel, r.Slack[i])
}

// SumClose reports whether got matches the sum of the losses (or, with
// mean, their mean): LossCloseIn within rel, plus SumSlack (or its mean).
func (r *Ref) SumClose(got, rel float64, mean bool) bool {
	if mean {
		return lossClose(got, r.Mean(), rel, r.SumSlack/r.Denom)
	}
	return lossClose(got, r.Sum, rel, r.SumSlack)
}

// Mean returns Sum/Denom, NaN when Denom is 0.
func (r *Ref) Mean() float64 {
	if r.Denom == 0 {
		return math.NaN()
	}
	return r.Sum / r.Denom
}

// LogSumExp is log Σ exp(z) in float64 with PyTorch's edge cases: NaN when z
// holds NaN or +Inf or is all -Inf.
func LogSumExp(z []float64) float64 {
	allNegInf := true
	for _, v := range z {
		if math.IsNaN(v) || math.IsInf(v, 1) {
			return math.NaN()
		}
		if !math.IsInf(v, -1) {
			allNegInf = false
		}
	}
	if allNegInf {
		return math.NaN()
	}
	return floats.LogSumExp(z)
}

func (o *Opts) weight(j int) float64 {
	if o.Weights == nil {
		return 1
	}
	return float64(o.Weights[j])
}

func (o *Opts) weightSum(cols int) float64 {
	if o.Weights == nil {
		return float64(cols)
	}
	W := 0.0
	for _, w := range o.Weights {
		W += float64(w)
	}
	return W
}

// capRow applies the soft cap and then the temperature to z in place:
// c·tanh(z/c)/τ. With a temperature alone and rounded, it is the devices'
// own float32 product z·fl(1/τ) (ce.Problem.Transform), whose values are
// then exact inputs to the rest, as rounded logits are; unrounded (LossOf,
// for finite differences), z/τ.
func (o *Opts) capRow(z []float64, rounded bool) {
	s := o.TempScale()
	switch {
	case o.Softcap > 0:
		for j := range z {
			z[j] = o.Softcap * math.Tanh(z[j]/o.Softcap) / o.tau()
		}
	case s != 1 && rounded:
		for j := range z {
			z[j] = float64(float32(z[j]) * float32(s))
		}
	case s != 1:
		for j := range z {
			z[j] /= o.tau()
		}
	}
}

// rowLoss returns the loss and lse of one row of capped logits z, relative
// to the max as PyTorch's log_softmax: lse - z_t = (m - z_t) + ls.
func (o *Opts) rowLoss(z []float64, t int) (loss, lse, m, ls float64) {
	m = math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, v)
	}
	sh := make([]float64, len(z))
	for j := range z {
		sh[j] = z[j] - m
	}
	ls = LogSumExp(sh)
	if !math.IsNaN(ls) { // log(1 + rest), the first max's term left out of rest: exact as p_max → 1
		rest, first := 0.0, true
		for _, v := range sh {
			if v == 0 && first {
				first = false
				continue
			}
			rest += math.Exp(v)
		}
		ls = math.Log1p(rest)
	}
	lse = m + ls
	loss = (1 - o.Smoothing) * o.weight(t) * ((m - z[t]) + ls)
	if o.Smoothing > 0 {
		s := 0.0
		for c := range z {
			s += o.weight(c) * (ls - sh[c])
		}
		loss += o.Smoothing / float64(len(z)) * s
	}
	if o.ZLoss > 0 {
		loss += o.ZLoss * lse * lse
	}
	return loss, lse, m, ls
}

// LossOf is the float64 loss of one row as a function of its raw logits,
// for finite-difference checks of the reference gradient.
func LossOf(z []float64, t int, o Opts) float64 {
	zz := append([]float64(nil), z...)
	o.capRow(zz, false)
	loss, _, _, _ := o.rowLoss(zz, t)
	return loss
}

// Reference evaluates rows × cols logits x (row stride stride) in float64.
// Its gradient is the analytic one (checked against finite differences of
// LossOf), computing the target column from expm1 as the kernels do.
func Reference(x []float32, rows, cols, stride int, targets []int32, o Opts) *Ref {
	near := func(int, float64) float64 { return -1 } // exact inputs: no logit is near without being equal
	if o.Computed() {
		near = func(_ int, zt float64) float64 { return 1e-6 * max(1, math.Abs(zt)) }
	}
	return reference(rows, cols, func(i int, z []float64) {
		for j := range z {
			z[j] = float64(x[i*stride+j])
		}
	}, near, targets, o)
}

// reference is Reference over logits that row sets, row i into z; near
// gives, once row i is set, how close to the target's logit zt another
// must be to count in Ref.Near (as the devices' rounding may order them
// either way).
func reference(rows, cols int, row func(i int, z []float64), near func(i int, zt float64) float64, targets []int32, o Opts) *Ref {
	r := &Ref{Loss: make([]float64, rows), LSE: make([]float64, rows), Correct: make([]bool, rows), Conf: make([]float64, rows),
		Greater: make([]int64, rows), Near: make([]int64, rows), Entropy: make([]float64, rows),
		Grad: make([][]float64, rows), Mag: make([][]float64, rows), Under: make([][]float64, rows), Slack: make([]float64, rows)}
	W := o.weightSum(cols)
	eps, lam, ec := o.Smoothing, o.ZLoss, o.Smoothing/float64(cols)
	for i := range rows {
		r.Grad[i], r.Mag[i] = make([]float64, cols), make([]float64, cols)
		t := int(targets[i])
		if int64(t) == o.Ignore {
			r.LSE[i], r.Conf[i], r.Entropy[i] = math.NaN(), math.NaN(), math.NaN()
			continue
		}
		z := make([]float64, cols)
		row(i, z)
		o.capRow(z, true)
		loss, lse, m, ls := o.rowLoss(z, t)
		wt := o.weight(t)
		r.Loss[i], r.LSE[i], r.Conf[i] = loss, lse, math.Exp(-ls)
		if !math.IsNaN(loss) && !math.IsInf(loss, 0) {
			// the error of (m - z_t) + ls: ls moves by Σ p_j·δ_j
			d := ulp32(m - z[t])
			for _, v := range z {
				if sh := v - m; sh < 0 && !math.IsInf(sh, -1) {
					d += math.Exp(sh-ls) * ulp32(sh)
				}
			}
			r.Slack[i] = ((1-eps)*wt + ec*W + 2*lam*math.Abs(lse)) * d
			r.SumSlack += r.Slack[i]
		}
		r.Entropy[i] = math.NaN()
		if !math.IsNaN(ls) {
			h := 0.0
			for _, v := range z {
				if sh := v - m; !math.IsInf(sh, -1) {
					h -= math.Exp(sh-ls) * (sh - ls)
				}
			}
			r.Entropy[i] = h
		}
		for j, v := range z {
			if v > z[t] {
				r.Greater[i]++
			}
			if j != t && math.Abs(v-z[t]) <= near(i, z[t]) {
				r.Near[i]++
			}
		}
		am := 0
		for j := range z {
			if z[j] > z[am] || math.IsNaN(z[am]) && !math.IsNaN(z[j]) {
				am = j
			}
		}
		r.Correct[i] = am == t && !math.IsNaN(loss) && !math.IsInf(z[am], -1)
		r.Sum += loss
		r.Denom += wt
		r.Counted++
		if lam > 0 {
			r.ZLoss += lam * lse * lse
		}
		pc := (1-eps)*wt + ec*W + 2*lam*math.Abs(lse) // p_j's coefficient
		for j := range z {
			p := math.Exp((z[j] - m) - ls)
			g := (1-eps)*wt*p + ec*(W*p-o.weight(j)) + 2*lam*lse*p
			under := 0.0
			if p < underP {
				under = pc * minNormal32
			}
			// lse = m + log s is known to an absolute error, that of log s,
			// as large as the sum's relative error: hence |lse| + 1.
			zl := 2 * lam * (math.Abs(lse) + 1) * p
			mag := (1-eps)*wt*p + ec*(W*p+o.weight(j)) + zl
			if j == t {
				pt1 := math.Expm1((z[j] - m) - ls)
				g = (1-eps)*wt*pt1 + (ec*W+2*lam*lse)*p - ec*o.weight(j)
				// p_t - 1 comes from expm1(-(lse - z_t)): an error in lse
				// moves it by as much times p_t, however small p_t - 1 is.
				mag = (1-eps)*wt*(math.Abs(pt1)+p) + ec*W*p + zl + ec*o.weight(j)
			}
			// the chain factor: 1/τ, times 1 - tanh²(x_j/c) with a cap
			if s := 1 / o.tau(); o.Softcap > 0 {
				u := z[j] / (o.Softcap * s)
				g *= s * (1 - u*u)
				mag *= s * (1 + u*u)
				under *= s * (1 + u*u)
			} else {
				g *= s
				mag *= s
				under *= s
			}
			r.Grad[i][j], r.Mag[i][j] = g, mag
			if under > 0 {
				if r.Under[i] == nil {
					r.Under[i] = make([]float64, cols)
				}
				r.Under[i][j] = under
			}
		}
	}
	return r
}

// underP is the softmax term below which Ref.Under allows for the exp's
// underflow: 2^-125.
const underP = 0x1p-125

// UnderAt returns Under[i][j] (0 where the row has none).
func (r *Ref) UnderAt(i, j int) float64 {
	if r.Under == nil || r.Under[i] == nil {
		return 0
	}
	return r.Under[i][j]
}

// Calibration returns the calibration bins (batch.Calibration) of r's
// rows whose targets are not ignore, and how many lie within d of a bin's
// edge, whose bin a device may round either way.
func (r *Ref) Calibration(targets []int32, ignore int64, d float64) (cal batch.Calibration, edge int) {
	for i, c := range r.Conf {
		if int64(targets[i]) == ignore {
			continue
		}
		cal.Add(c, r.Correct[i])
		if x := c * batch.CalibrationBins; !math.IsNaN(x) && math.Abs(x-math.Round(x)) < d*batch.CalibrationBins && x > 0.5 && x < batch.CalibrationBins-0.5 {
			edge++
		}
	}
	return cal, edge
}
