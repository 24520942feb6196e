package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// impls returns the BLAS this host has: gonum always, OpenBLAS where it
// loads (XENT_REQUIRE_BLAS=1 makes its absence a failure, as CI does).
func impls(t *testing.T) []*BLAS {
	bs := []*BLAS{Gonum()}
	o, err := OpenBLAS()
	switch {
	case err == nil:
		bs = append(bs, o)
	case os.Getenv("XENT_REQUIRE_BLAS") == "1":
		t.Fatalf("XENT_REQUIRE_BLAS=1: %v", err)
	default:
		t.Logf("OpenBLAS not tested: %v", err)
	}
	return bs
}

// TestSgemm checks every implementation against a float64 product, per
// element within a few ulps of Σ|a·b|, at odd shapes, every transpose,
// strided operands, alpha and beta; c's padding must stay untouched.
func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(seed.New(t), 0))
	for _, b := range impls(t) {
		checkSgemm(t, r, b)
	}
}

// TestSgemmBlocks: gonum's aᵀ·b from a copy of aᵀ (gonumSgemm), made a
// block of rows at a time where the copy would pass scratchMost: here
// blocks of one to three rows, so that every shape of TestSgemm of
// transposeMin columns or more takes several.
func TestSgemmBlocks(t *testing.T) {
	defer func(old int) { scratchMost = old }(scratchMost)
	scratchMost = 100
	checkSgemm(t, rand.New(rand.NewPCG(seed.New(t), 0)), Gonum())
}

// checkSgemm is TestSgemm of one implementation.
func checkSgemm(t *testing.T, r *rand.Rand, b *BLAS) {
	shapes := [][3]int{{1, 1, 1}, {1, 7, 1}, {7, 1, 9}, {5, 3, 0}, {17, 33, 65}, {64, 129, 31}, {3, 300, 257}, {40, 65, 3}}
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {-0.5, 1}, {2, 0.25}} {
					m, n, k := s[0], s[1], s[2]
					name := fmt.Sprintf("%s/%dx%dx%d/tA=%v/tB=%v/alpha=%g/beta=%g", b.Name(), m, n, k, tA, tB, ab[0], ab[1])
					ar, ac := m, k
					if tA {
						ar, ac = k, m
					}
					br, bc := k, n
					if tB {
						br, bc = n, k
					}
					lda, ldb, ldc := ac+2, bc+3, n+1
					a, bm := randn(r, ar*lda), randn(r, br*ldb)
					c := randn(r, m*ldc+1)
					c0 := append([]float32(nil), c...)
					b.Sgemm(tA, tB, m, n, k, ab[0], a, lda, bm, ldb, ab[1], c, ldc)
					for i := range m {
						for j := range ldc {
							if j >= n || i*ldc+j >= len(c)-1 {
								if i*ldc+j < len(c) {
									require.Equal(t, c0[i*ldc+j], c[i*ldc+j], "%s: padding (%d, %d) written", name, i, j)
								}
								continue
							}
							var want, mag float64
							for l := range k {
								ai, bi := i*lda+l, l*ldb+j
								if tA {
									ai = l*lda + i
								}
								if tB {
									bi = j*ldb + l
								}
								av, bv := a[ai], bm[bi]
								want += float64(av) * float64(bv)
								mag += math.Abs(float64(av) * float64(bv))
							}
							want = float64(ab[0])*want + float64(ab[1])*float64(c0[i*ldc+j])
							mag = math.Abs(float64(ab[0]))*mag + math.Abs(float64(ab[1])*float64(c0[i*ldc+j]))
							got := float64(c[i*ldc+j])
							require.LessOrEqual(t, math.Abs(got-want), 1e-6*float64(k+2)*mag+1e-30, "%s: c[%d][%d] = %g, want %g", name, i, j, got, want)
						}
					}
					require.Equal(t, c0[len(c)-1], c[len(c)-1], "%s: past the end written", name)
				}
			}
		}
	}
}

func randn(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func TestDefault(t *testing.T) {
	b, why := Default()
	require.NotNil(t, b)
	if _, err := OpenBLAS(); err == nil && os.Getenv("XENT_BLAS") != "gonum" {
		require.NotEqual(t, "gonum", b.Name())
	} else {
		require.Equal(t, "gonum", b.Name())
		require.NotEmpty(t, why)
	}
	t.Logf("default BLAS: %s %s", b.Name(), why)
}
