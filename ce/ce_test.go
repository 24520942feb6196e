package ce_test

import (
	"math"
	"slices"
	"testing"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/internal/seed"
)

// partialOf is the partial of z (the classes col0, col0+1, ...) computed
// directly in float64: the reference for Merge. Rest leaves the first
// max's term out; a -Inf adds nothing to it (and -Inf to Dot).
func partialOf(z []float32, col0, t int) ce.Partial {
	p := ce.EmptyPartial()
	for j, v := range z {
		if v > p.Max {
			p.Max, p.Arg = v, col0+j
		}
	}
	p.ArgMax = p.Max
	s := 0.0 // the first max's term left out
	for j, v := range z {
		if !math.IsInf(float64(v), -1) && col0+j != p.Arg {
			s += math.Exp(float64(v) - float64(p.Max))
		}
		p.Dot += float64(v) - float64(p.Max)
		p.WSum++
	}
	p.Rest = s
	if p.Arg < 0 {
		p.Rest = -1
	}
	if t >= col0 && t < col0+len(z) {
		p.ZT, p.HasT = z[t-col0], true
	}
	return p
}

// TestMerge: the partials of a row's shards, merged in any order, give the
// whole row's, within 1e-12 relative (the rescaled sums' rounding), and
// the empty partial is the identity.
func TestMerge(t *testing.T) {
	r := seed.Rand(t, 1)
	for range 200 {
		n := 1 + r.IntN(300)
		z := make([]float32, n)
		for j := range z {
			z[j] = float32(r.NormFloat64() * 4)
		}
		tg := r.IntN(n)
		want := partialOf(z, 0, tg)
		cuts := []int{0, n}
		for range r.IntN(5) {
			cuts = append(cuts, r.IntN(n+1))
		}
		slices.Sort(cuts)
		var parts []ce.Partial
		for k := 0; k+1 < len(cuts); k++ {
			if cuts[k] < cuts[k+1] {
				parts = append(parts, partialOf(z[cuts[k]:cuts[k+1]], cuts[k], tg))
			}
		}
		r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		got := ce.EmptyPartial()
		for _, p := range parts {
			got.Merge(p)
		}
		got.Merge(ce.EmptyPartial())
		if got.Max != want.Max || got.Arg != want.Arg || got.ZT != want.ZT || !got.HasT || got.WSum != want.WSum {
			t.Fatalf("n %d cuts %v: got %+v, want %+v", n, cuts, got, want)
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"sum", 1 + got.Rest, 1 + want.Rest}, {"dot", got.Dot, want.Dot}} {
			if d := math.Abs(c.got - c.want); d > 1e-12*math.Abs(c.want) && d > 1e-12 {
				t.Fatalf("n %d cuts %v: %s %v, want %v", n, cuts, c.name, c.got, c.want)
			}
		}
	}
}

// TestFinish: the textbook's worked example (the true class's probability
// .2, .6, .4, .8: mean loss 0.815, perplexity 2.26), and the loss of a
// confident row (p_t = 1 - 1e-9) to its relative precision.
func TestFinish(t *testing.T) {
	var p ce.Problem
	mean := 0.0
	for _, pt := range []float64{.2, .6, .4, .8} {
		// two classes: z_t = log pt, z_o = log(1 - pt)
		z := []float32{float32(math.Log(pt)), float32(math.Log(1 - pt))}
		part := partialOf(z, 0, 0)
		loss, _, _ := p.Finish(&part, 0, 2)
		if math.Abs(loss+math.Log(pt)) > 1e-7 {
			t.Fatalf("p_t %v: loss %v, want %v", pt, loss, -math.Log(pt))
		}
		mean += loss / 4
	}
	if math.Abs(mean-0.815) > 5e-4 || math.Abs(math.Exp(mean)-2.26) > 5e-3 {
		t.Fatalf("mean %v (perplexity %v), want 0.815 (2.26)", mean, math.Exp(mean))
	}
	part := ce.Partial{Max: 20, Rest: 1e-9, Arg: 0, ZT: 20, HasT: true}
	loss, lse, correct := p.Finish(&part, 0, 3)
	if want := math.Log1p(1e-9); math.Abs(loss-want) > 1e-15*want || lse != 20+want || !correct {
		t.Fatalf("confident row: loss %v lse %v correct %v, want %v", loss, lse, correct, want)
	}
	empty := ce.EmptyPartial()
	if loss, _, correct := p.Finish(&empty, 0, 3); !math.IsNaN(loss) || correct {
		t.Fatalf("an empty sum gives NaN, never correct: %v %v", loss, correct)
	}
}

// klPartOf is the KL part of the teacher's classes ids (log-probabilities
// lp) of the row z, whose classes start at col0, taken against part, the
// partial of z or of a row it is a shard of.
func klPartOf(part *ce.Partial, z []float32, col0 int, ids []int32, lp []float32) ce.KLPart {
	var k ce.KLPart
	for j, id := range ids {
		if c := int(id) - col0; c >= 0 && c < len(z) {
			k.Add(part, id, lp[j], z[c])
		}
	}
	return k
}

// TestMergeKL: the KL parts of a row's shards, each taken against its own
// shard's partial, merged pairwise in any order and tree (MergeKL), equal
// the part taken against the whole row's partial within 1e-12 of their
// magnitudes, and give its distillation: over ties of the max across
// shards (the first is the row's), the max among the teacher's classes or
// not, shards of nothing but -Inf, shards without a teacher class, and
// teachers of p = 0 entries.
func TestMergeKL(t *testing.T) {
	r := seed.Rand(t, 2)
	ninf := float32(math.Inf(-1))
	for it := range 400 {
		n := 2 + r.IntN(200)
		z := make([]float32, n)
		for j := range z {
			z[j] = float32(r.NormFloat64() * 6)
		}
		if it%3 == 0 { // a tie of the max, in another place
			j0, j1 := r.IntN(n), r.IntN(n)
			z[j0] = 40
			z[j1] = 40
		}
		lo, hi := r.IntN(n), r.IntN(n+1) // a run of -Inf
		for j := lo; j < hi; j++ {
			z[j] = ninf
		}
		if it%7 == 0 { // a confident row: its first max far above the rest
			z[r.IntN(n)] = 90
		}
		K := 1 + r.IntN(min(n, 12))
		ids := make([]int32, K)
		for j, c := range r.Perm(n)[:K] {
			ids[j] = int32(c)
		}
		if it%2 == 0 { // the row's max among the teacher's classes
			if a := int32(slices.Index(z, slices.Max(z))); !slices.Contains(ids, a) {
				ids[r.IntN(K)] = a
			}
		}
		lp := make([]float32, K)
		for j := range lp {
			lp[j] = float32(-2 - r.Float64()*3)
			if r.IntN(8) == 0 {
				lp[j] = ninf
			}
		}
		tg := r.IntN(n)
		whole := partialOf(z, 0, tg)
		want := klPartOf(&whole, z, 0, ids, lp)
		cuts := []int{0, n}
		for range r.IntN(6) {
			cuts = append(cuts, r.IntN(n+1))
		}
		slices.Sort(cuts)
		type shard struct {
			p ce.Partial
			k ce.KLPart
		}
		var shards []shard
		for s := 0; s+1 < len(cuts); s++ {
			if cuts[s] < cuts[s+1] {
				p := partialOf(z[cuts[s]:cuts[s+1]], cuts[s], tg)
				shards = append(shards, shard{p, klPartOf(&p, z[cuts[s]:cuts[s+1]], cuts[s], ids, lp)})
			}
		}
		r.Shuffle(len(shards), func(i, j int) { shards[i], shards[j] = shards[j], shards[i] })
		for len(shards) > 1 { // a random tree of pairs
			i := r.IntN(len(shards) - 1)
			ce.MergeKL(&shards[i].p, &shards[i].k, shards[i+1].p, shards[i+1].k)
			shards = slices.Delete(shards, i+1, i+2)
		}
		got := shards[0]
		ce.MergeKL(&got.p, &got.k, ce.EmptyPartial(), ce.KLPart{})
		if got.p.Max != whole.Max || got.p.Arg != whole.Arg || got.k.HasArg != want.HasArg {
			t.Fatalf("it %d cuts %v: partial %+v part %+v, want %+v %+v", it, cuts, got.p, got.k, whole, want)
		}
		for _, c := range []struct {
			name           string
			got, want, mag float64
		}{
			{"Cross", got.k.Cross, want.Cross, math.Abs(want.Cross) + want.Mass*math.Abs(float64(whole.Max))},
			{"E", got.k.E, want.E, want.Mag},
			{"Mag", got.k.Mag, want.Mag, want.Mag},
			{"Mass", got.k.Mass, want.Mass, want.Mass},
		} {
			if c.got != c.want && !(math.Abs(c.got-c.want) <= 1e-12*c.mag) { // equal, or within (a row of -Inf alone: Max -Inf, Mass 0, a magnitude of NaN)
				t.Fatalf("it %d cuts %v: %s %v, want %v (magnitude %v)", it, cuts, c.name, c.got, c.want, c.mag)
			}
		}
		dg, dw := ce.DistillOf(&got.p, got.k, lp), ce.DistillOf(&whole, want, lp)
		if !(math.Abs(dg.KL-dw.KL) <= 1e-9*(math.Abs(dw.KL)+1)) && dg.KL != dw.KL && !(math.IsNaN(dg.KL) && math.IsNaN(dw.KL)) {
			t.Fatalf("it %d cuts %v: KL %v, want %v (%+v %+v, %+v %+v)", it, cuts, dg.KL, dw.KL, got.p, got.k, whole, want)
		}
	}
}
