package cl

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/ebitengine/purego"

	"github.com/xentlab/xent/internal/dl"
)

// CLBlast, the tuned OpenCL BLAS (Debian libclblast1), is loaded at run
// time like OpenCL itself: $XENT_CLBLAST_LIB, else dl.CLBlast's names
// (libclblast.so.1, clblast.dll, libclblast.dylib). Its
// Sgemm enqueues on the caller's queue and buffers.

var (
	blastOnce  sync.Once
	blastSgemm func(layout, tA, tB int32, m, n, k uintptr, alpha float32, a Mem, aOff, lda uintptr,
		b Mem, bOff, ldb uintptr, beta float32, c Mem, cOff, ldc uintptr, q *Queue, ev *Event) int32
	blastOverride func(d Device, kernel *byte, precision int32, n uintptr, names **byte, values *uintptr) int32
	blastClear    func() int32
	blastName     string
	blastErr      error
)

// CLBlast's enums (clblast_c.h).
const (
	blastRowMajor = 101
	blastNo       = 111
	blastYes      = 112
	blastSingle   = 32 // CLBlastPrecisionSingle
)

// LoadCLBlast loads CLBlast once (after Load); it returns an error
// wrapping ErrNoLibrary when the library or its CLBlastSgemm is missing.
func LoadCLBlast() (string, error) {
	blastOnce.Do(func() {
		h, name, err := dl.OpenFirst(dl.CLBlast, os.Getenv("XENT_CLBLAST_LIB"))
		if err != nil {
			blastName = cmp.Or(os.Getenv("XENT_CLBLAST_LIB"), strings.Join(dl.CLBlast.Names(runtime.GOOS), ", "))
			blastErr = fmt.Errorf("%w: CLBlast: %v", ErrNoLibrary, err)
			return
		}
		blastName = name
		p, err := dl.Sym(h, "CLBlastSgemm")
		if err != nil {
			blastErr = fmt.Errorf("%w: %s lacks CLBlastSgemm", ErrNoLibrary, name)
			return
		}
		purego.RegisterFunc(&blastSgemm, p)
		if p, err := dl.Sym(h, "CLBlastOverrideParameters"); err == nil {
			purego.RegisterFunc(&blastOverride, p)
		}
		if p, err := dl.Sym(h, "CLBlastClearCache"); err == nil {
			purego.RegisterFunc(&blastClear, p)
		}
	})
	return blastName, blastErr
}

// BlastStatus is a CLBlast status code that is not an OpenCL one.
type BlastStatus int32

func (s BlastStatus) Error() string {
	switch s {
	case -2048:
		return "CLBlast status -2048 (an invalid kernel to override)"
	case -2047:
		return "CLBlast status -2047 (a parameter of the kernel missing from the override)"
	}
	return fmt.Sprintf("CLBlast status %d", int32(s))
}

// BlastOverride sets CLBlast's float32 parameters of kernel (say
// "Xgemm") on device d, process-wide, for the routines built after it
// (CLBlastOverrideParameters: CLBlast keys its compiled programs by the
// parameters, so no cache is stale). CLBlast refuses a set that lacks one
// of the kernel's parameters or names an unknown kernel; LoadCLBlast must
// have succeeded.
func BlastOverride(d Device, kernel string, params map[string]int) error {
	if blastOverride == nil {
		return fmt.Errorf("%w: %s lacks CLBlastOverrideParameters", ErrNoLibrary, blastName)
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	cs := make([][]byte, len(names)) // NUL-terminated, alive until the call returns
	ptrs := make([]*byte, len(names)+1)
	vals := make([]uintptr, len(names)+1)
	for i, k := range names {
		cs[i] = append([]byte(k), 0)
		ptrs[i], vals[i] = &cs[i][0], uintptr(params[k])
	}
	kn := append([]byte(kernel), 0)
	st := blastOverride(d, &kn[0], blastSingle, uintptr(len(names)), &ptrs[0], &vals[0])
	runtime.KeepAlive(cs)
	runtime.KeepAlive(kn)
	return blastStatus(st)
}

// BlastClearCache empties CLBlast's caches of compiled programs and of
// parameters (overrides included: the next routine takes its database's).
func BlastClearCache() error {
	if blastClear == nil {
		return fmt.Errorf("%w: %s lacks CLBlastClearCache", ErrNoLibrary, blastName)
	}
	return blastStatus(blastClear())
}

// blastStatus is a CLBlast status as an error: nil, an OpenCL Status, or
// a BlastStatus.
func blastStatus(st int32) error {
	switch {
	case st == 0:
		return nil
	case st < 0 && st > -1000:
		return Status(st)
	}
	return BlastStatus(st)
}

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
	return blastStatus(st)
}
