// Package blas is the one matrix product xent needs, C = α·op(A)·op(B) +
// β·C over row-major float32 matrices (BLAS's Sgemm), from a well-kept
// library: OpenBLAS loaded at run time with purego where it is installed,
// gonum's pure-Go BLAS everywhere.
//
// # Selection
//
// [Default] is OpenBLAS when libopenblas.so.0 (Debian's
// libopenblas0-pthread; libopenblas.dll on Windows; on macOS Apple's
// Accelerate, whose CBLAS has the same cblas_sgemm: dl.BLAS;
// $XENT_BLAS_LIB names another file) loads, else gonum; XENT_BLAS=gonum
// forces gonum. [Gonum] and [OpenBLAS] pick one.
//
// # Contract
//
// The caller checks shapes: op(A) is m × k, op(B) k × n, C m × n, every
// leading dimension at least the row length it strides, every slice long
// enough. Both implementations compute in float32; they differ in the
// order of the sums, by a few ulps of Σ|a·b|.
package blas

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/xentlab/xent/internal/dl"
	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BLAS is a library's Sgemm.
type BLAS struct {
	name   string
	detail string
	sgemm  func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// Name names the library ("OpenBLAS 0.3.21", "gonum").
func (b *BLAS) Name() string { return b.name }

// Detail says more: OpenBLAS's build configuration (its kernels'
// target, threads).
func (b *BLAS) Detail() string { return b.detail }

// Sgemm sets c = alpha·op(a)·op(b) + beta·c, where op(a) is a (m × k, row
// stride lda) or, with tA, aᵀ (a is then k × m); likewise op(b) (k × n)
// with tB; c is m × n with row stride ldc. With beta 0, c is not read.
func (b *BLAS) Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, bm []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		// alpha·op(a)·op(b) is 0: scale c alone (both libraries agree).
		for i := range m {
			r := c[i*ldc : i*ldc+n]
			for j := range r {
				if beta == 0 {
					r[j] = 0
				} else {
					r[j] *= beta
				}
			}
		}
		return
	}
	b.sgemm(tA, tB, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc)
}

var gonumBLAS = &BLAS{name: "gonum", detail: "gonum.org/v1/gonum/blas/gonum, pure Go", sgemm: gonumSgemm}

// gonumSgemm is gonum's Sgemm, except that aᵀ·b of at least transposeMin
// columns is computed as a'·b from a' = aᵀ copied out first: gonum's
// kernel for aᵀ·b runs at a fraction of its speed there (the fused
// linear's dW = Gᵀ·H, 8192 classes × 256 features × 256 rows: 4.8
// GFLOP/s, against 21.8 for the product of the same shapes without a
// transpose, and 17.8 with the copy; 2-core AMD EPYC), while a·bᵀ runs at
// 15.6–20 and is left as it is (slower with a copy). The copy is made
// and used a block of c's rows at a time, at most scratchMost elements
// (from a pool).
func gonumSgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gonum.Implementation{}
	if !tA || tB || n < transposeMin {
		g.Sgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	mc := max(1, min(m, scratchMost/k))
	s := getScratch(mc * k)
	defer scratch.Put(s)
	for i0 := 0; i0 < m; i0 += mc {
		mi := min(mc, m-i0)
		t := (*s)[:mi*k]
		transpose(t, a[i0:], k, mi, lda) // columns [i0, i0+mi) of a
		g.Sgemm(gblas.NoTrans, gblas.NoTrans, mi, n, k, alpha, t, k, b, ldb, beta, c[i0*ldc:], ldc)
	}
}

// scratchMost bounds gonumSgemm's copy of aᵀ: 4 MiB (a variable for
// tests).
var scratchMost = 1 << 20

// transposeMin is the fewest columns of aᵀ·b that gonumSgemm computes
// from a copy of aᵀ. Gonum's aᵀ·b of 8192 × n × 256 ran at 10–25 GFLOP/s
// for n of 16 to 64, and at 3.6–6.3 for 65, 128 and 256 (18.8 at 96),
// where the copy made it 12–20 (2-core AMD EPYC).
const transposeMin = 65

// scratch holds *[]float32 of gonumSgemm's copies.
var scratch sync.Pool

// getScratch returns a scratch slice of n elements from the pool.
func getScratch(n int) *[]float32 {
	s, _ := scratch.Get().(*[]float32)
	if s == nil || cap(*s) < n {
		v := make([]float32, n)
		return &v
	}
	*s = (*s)[:n]
	return s
}

// transpose sets t (c × r, row-major, packed) to aᵀ, a r × c with row
// stride lda, in blocks of 32 × 32, its rows split over GOMAXPROCS
// goroutines where it holds 64K elements or more.
func transpose(t, a []float32, r, c, lda int) {
	p := 1
	if r*c >= 1<<16 {
		p = min(runtime.GOMAXPROCS(0), c/32+1)
	}
	var wg sync.WaitGroup
	step := (c + p - 1) / p
	for j0 := 0; j0 < c; j0 += step {
		wg.Go(func() {
			j1 := min(j0+step, c)
			const bs = 32
			for i0 := 0; i0 < r; i0 += bs {
				for jb := j0; jb < j1; jb += bs {
					je := min(jb+bs, j1)
					for i := i0; i < min(i0+bs, r); i++ {
						row := a[i*lda+jb : i*lda+je]
						for j, v := range row {
							t[(jb+j)*r+i] = v
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

func trans(t bool) gblas.Transpose {
	if t {
		return gblas.Trans
	}
	return gblas.NoTrans
}

// Gonum returns gonum's pure-Go Sgemm (parallel over GOMAXPROCS).
func Gonum() *BLAS { return gonumBLAS }

// ErrNoLibrary is returned (wrapped) when OpenBLAS cannot be loaded.
var ErrNoLibrary = errors.New("blas: library not available")

var (
	openOnce sync.Once
	openBLAS *BLAS
	openErr  error
)

// OpenBLAS returns the Sgemm of the OpenBLAS library, loaded once, or an
// error wrapping ErrNoLibrary.
func OpenBLAS() (*BLAS, error) {
	openOnce.Do(func() { openBLAS, openErr = load(os.Getenv("XENT_BLAS_LIB")) })
	return openBLAS, openErr
}

// CBLAS's enums.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// lib holds the functions of a CBLAS library. blasint is int32 in the
// LP64 builds Debian ships (libopenblas64 would be the ILP64 one).
type lib struct {
	sgemm  func(order, tA, tB, m, n, k int32, alpha float32, a unsafe.Pointer, lda int32, b unsafe.Pointer, ldb int32, beta float32, c unsafe.Pointer, ldc int32)
	config func() string
}

// load opens name (else dl.BLAS's names on this system) and binds
// cblas_sgemm (and openblas_get_config for the name, when present). A
// missing symbol is an error naming it.
func load(name string) (*BLAS, error) {
	h, name, err := dl.OpenFirst(dl.BLAS, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	var l lib
	p, err := dl.Sym(h, "cblas_sgemm")
	if err != nil {
		return nil, fmt.Errorf("%w: %s lacks cblas_sgemm", ErrNoLibrary, name)
	}
	purego.RegisterFunc(&l.sgemm, p)
	label, detail := "CBLAS", name // another CBLAS than OpenBLAS: Accelerate on macOS, or a file XENT_BLAS_LIB names
	if strings.Contains(name, "Accelerate.framework") {
		label = "Accelerate"
	}
	if p, err := dl.Sym(h, "openblas_get_config"); err == nil {
		purego.RegisterFunc(&l.config, p)
		detail = strings.TrimSpace(l.config()) // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ... Haswell MAX_THREADS=64"
		if f := strings.Fields(detail); len(f) >= 2 {
			label = f[0] + " " + f[1]
		}
	}
	return &BLAS{name: label, detail: detail, sgemm: l.call}, nil
}

func (l *lib) call(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ct := func(t bool) int32 {
		if t {
			return cblasTrans
		}
		return cblasNoTrans
	}
	// The slices stay reachable (and Go's heap does not move) for the
	// call's duration; the library keeps no pointer after it returns.
	l.sgemm(cblasRowMajor, ct(tA), ct(tB), int32(m), int32(n), int32(k), alpha,
		unsafe.Pointer(unsafe.SliceData(a)), int32(lda), unsafe.Pointer(unsafe.SliceData(b)), int32(ldb),
		beta, unsafe.Pointer(unsafe.SliceData(c)), int32(ldc))
}

var (
	defOnce sync.Once
	defDone atomic.Bool // defOnce has run
	def     *BLAS
	defWhy  string
)

// Default returns OpenBLAS when it loads, else gonum (always, with
// XENT_BLAS=gonum). Why says, when it is gonum, why. The first call loads
// the library (and OpenBLAS starts its threads): a caller that needs no
// matrix product leaves it unloaded.
func Default() (b *BLAS, why string) {
	defOnce.Do(func() {
		defer defDone.Store(true)
		if os.Getenv("XENT_BLAS") == "gonum" {
			def, defWhy = gonumBLAS, "XENT_BLAS=gonum"
			return
		}
		o, err := OpenBLAS()
		if err != nil {
			def, defWhy = gonumBLAS, err.Error()
			return
		}
		def = o
	})
	return def, defWhy
}

// Chosen returns Default's library where a call has chosen it, else nil
// (nothing loaded yet).
func Chosen() *BLAS {
	if defDone.Load() {
		return def
	}
	return nil
}
