package probe

import (
	"math"
	"testing"

	"github.com/xentlab/xent/internal/seed"
)

// TestSum: each read loop this CPU has against the float64 sum, at
// lengths around the vector widths and its four-vector step.
func TestSum(t *testing.T) {
	r := seed.Rand(t, 1)
	for _, isa := range []string{"avx2", "avx512", "neon"} {
		if !Has(isa, "sum") {
			t.Logf("%s: no read loop here", isa)
			continue
		}
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4099} {
			x := make([]float32, n)
			ref := 0.0
			for j := range x {
				x[j] = float32(r.Float64())
				ref += float64(x[j])
			}
			s, ok := Sum(isa, x)
			if !ok || math.Abs(float64(s)-ref) > 1e-5*float64(n+1) {
				t.Fatalf("%s, n %d: sum %v (%v), want %v", isa, n, s, ok, ref)
			}
		}
	}
}

// TestFMA: the FMA loops say their flops, and a build without one says 0.
func TestFMA(t *testing.T) {
	for isa, lanes := range map[string]int{"avx2": 8, "avx512": 16} {
		f, _ := FMA(isa, 3)
		if want := 3 * fmaChains * 2 * lanes; Has(isa, "fma") && f != want || !Has(isa, "fma") && f != 0 {
			t.Fatalf("%s: %d flops, want %d (has it: %v)", isa, f, want, Has(isa, "fma"))
		}
	}
	if f, _ := FMA("portable", 3); f != 0 {
		t.Fatalf("portable: %d flops", f)
	}
}
