package ce_test

import (
	"math"
	"slices"
	"testing"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/internal/seed"
)

// partialOf is the partial of z (the classes col0, col0+1, ...) computed
// directly in float64: the reference for Merge.
func partialOf(z []float32, col0, t int) ce.Partial {
	p := ce.EmptyPartial()
	for j, v := range z {
		if v > p.Max {
			p.Max, p.Arg = v, col0+j
		}
	}
	p.ArgMax = p.Max
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - float64(p.Max))
		p.Dot += float64(v) - float64(p.Max)
		p.WSum++
	}
	p.Rest = s - 1
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
