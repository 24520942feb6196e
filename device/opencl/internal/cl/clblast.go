package cl

import (
	"fmt"
	"os"
	"sync"

	"github.com/ebitengine/purego"
)

// CLBlast, the tuned OpenCL BLAS (Debian libclblast1), is loaded at run
// time like OpenCL itself: $XENT_CLBLAST_LIB or libclblast.so.1. Its
// Sgemm enqueues on the caller's queue and buffers.

var (
	blastOnce  sync.Once
	blastSgemm func(layout, tA, tB int32, m, n, k uintptr, alpha float32, a Mem, aOff, lda uintptr,
		b Mem, bOff, ldb uintptr, beta float32, c Mem, cOff, ldc uintptr, q *Queue, ev *Event) int32
	blastName string
	blastErr  error
)

// CLBlast's enums (clblast_c.h).
const (
	blastRowMajor = 101
	blastNo       = 111
	blastYes      = 112
)

// LoadCLBlast loads CLBlast once (after Load); it returns an error
// wrapping ErrNoLibrary when the library or its CLBlastSgemm is missing.
func LoadCLBlast() (string, error) {
	blastOnce.Do(func() {
		name := os.Getenv("XENT_CLBLAST_LIB")
		if name == "" {
			name = "libclblast.so.1"
		}
		blastName = name
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			blastErr = fmt.Errorf("%w: CLBlast: %s: %v", ErrNoLibrary, name, err)
			return
		}
		p, err := purego.Dlsym(h, "CLBlastSgemm")
		if err != nil || p == 0 {
			blastErr = fmt.Errorf("%w: %s lacks CLBlastSgemm", ErrNoLibrary, name)
			return
		}
		purego.RegisterFunc(&blastSgemm, p)
	})
	return blastName, blastErr
}

// BlastStatus is a CLBlast status code that is not an OpenCL one.
type BlastStatus int32

func (s BlastStatus) Error() string { return fmt.Sprintf("CLBlast status %d", int32(s)) }

// Sgemm enqueues c = alpha·op(a)·op(b) + beta·c on q, row-major with
// leading dimensions and offsets in elements (CLBlastSgemm); LoadCLBlast
// must have succeeded.
func (q Queue) Sgemm(tA, tB bool, m, n, k int, alpha float32, a Mem, aOff, lda int, b Mem, bOff, ldb int, beta float32, c Mem, cOff, ldc int) error {
	t := func(v bool) int32 {
		if v {
			return blastYes
		}
		return blastNo
	}
	var ev Event
	st := blastSgemm(blastRowMajor, t(tA), t(tB), uintptr(m), uintptr(n), uintptr(k), alpha, a, uintptr(aOff), uintptr(lda),
		b, uintptr(bOff), uintptr(ldb), beta, c, uintptr(cOff), uintptr(ldc), &q, &ev)
	if ev != 0 {
		l().releaseEvent(ev)
	}
	switch {
	case st == 0:
		return nil
	case st < 0 && st > -1000:
		return Status(st)
	}
	return BlastStatus(st)
}
