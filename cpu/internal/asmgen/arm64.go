package main

// The arm64 (NEON) kernels. avo emits amd64 only, so this file writes the
// Go assembly text itself; Go's arm64 assembler lacks the vector
// floating-point instructions (FADD, FMUL, FMAX, ... on .4S), which are
// emitted as WORDs from their A64 encodings (checked against GNU as).
// The kernels take lengths that are multiples of 16; package cpu runs a
// tail through them padded.

import (
	"fmt"
	"math"
	"os"
	"strings"
)

type a64 struct{ b strings.Builder }

func (a *a64) f(format string, args ...any) { fmt.Fprintf(&a.b, "\t"+format+"\n", args...) }
func (a *a64) label(l string)               { fmt.Fprintf(&a.b, "%s:\n", l) }

// Vector floating-point instructions on .4S (or .2D) by encoding: d, n, m
// are V register numbers.
func (a *a64) word(name string, base uint32, d, n, m int) {
	a.f("WORD $0x%08x // %s", base|uint32(m)<<16|uint32(n)<<5|uint32(d), name)
}

func (a *a64) fadd(d, n, m int) {
	a.word(fmt.Sprintf("fadd v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x4e20d400, d, n, m)
}
func (a *a64) fsub(d, n, m int) {
	a.word(fmt.Sprintf("fsub v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x4ea0d400, d, n, m)
}
func (a *a64) fmul(d, n, m int) {
	a.word(fmt.Sprintf("fmul v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x6e20dc00, d, n, m)
}
func (a *a64) fmax(d, n, m int) {
	a.word(fmt.Sprintf("fmax v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x4e20f400, d, n, m)
}
func (a *a64) fmaxnm(d, n, m int) {
	a.word(fmt.Sprintf("fmaxnm v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x4e20c400, d, n, m)
}
func (a *a64) fadd2d(d, n, m int) {
	a.word(fmt.Sprintf("fadd v%d.2d, v%d.2d, v%d.2d", d, n, m), 0x4e60d400, d, n, m)
}
func (a *a64) faddp(d, n, m int) {
	a.word(fmt.Sprintf("faddp v%d.4s, v%d.4s, v%d.4s", d, n, m), 0x6e20d400, d, n, m)
}
func (a *a64) fcvtl(d, n int) { a.word(fmt.Sprintf("fcvtl v%d.2d, v%d.2s", d, n), 0x0e617800, d, n, 0) }
func (a *a64) fcvtl2(d, n int) {
	a.word(fmt.Sprintf("fcvtl2 v%d.2d, v%d.4s", d, n), 0x4e617800, d, n, 0)
}
func (a *a64) fmaxnmv(d, n int) {
	a.word(fmt.Sprintf("fmaxnmv s%d, v%d.4s", d, n), 0x6e30c800, d, n, 0)
}
func (a *a64) fmaxv(d, n int)  { a.word(fmt.Sprintf("fmaxv s%d, v%d.4s", d, n), 0x6e30f800, d, n, 0) }
func (a *a64) faddpS(d, n int) { a.word(fmt.Sprintf("faddp s%d, v%d.2s", d, n), 0x7e30d800, d, n, 0) }
func (a *a64) faddpD(d, n int) { a.word(fmt.Sprintf("faddp d%d, v%d.2d", d, n), 0x7e70d800, d, n, 0) }

// fmla: d += n·m (Go's VFMLA takes m, n, d).
func (a *a64) fmla(d, n, m int)   { a.f("VFMLA V%d.S4, V%d.S4, V%d.S4", m, n, d) }
func (a *a64) mov(d, n int)       { a.f("VMOV V%d.B16, V%d.B16", n, d) }
func (a *a64) zero(d int)         { a.f("VEOR V%d.B16, V%d.B16, V%d.B16", d, d, d) }
func (a *a64) addInt(d, n, m int) { a.f("VADD V%d.S4, V%d.S4, V%d.S4", m, n, d) }
func (a *a64) shl(d, n, s int)    { a.f("VSHL $%d, V%d.S4, V%d.S4", s, n, d) }
func (a *a64) load4(p string, v0 int) {
	a.f("VLD1.P 64(%s), [V%d.S4, V%d.S4, V%d.S4, V%d.S4]", p, v0, v0+1, v0+2, v0+3)
}
func (a *a64) store4(p string, v0 int) {
	a.f("VST1.P [V%d.S4, V%d.S4, V%d.S4, V%d.S4], 64(%s)", v0, v0+1, v0+2, v0+3, p)
}

// The exp's registers: V16 = m, V17 = -88, V18 = log2 e, V19 = 1.5·2^23,
// V20 = -ln2 (float32), V22–V27 the polynomial (Cephes' expf: P0 first),
// V28 = 1, V29 = 127 - bits(1.5·2^23); V21 is free for a max, V30 and V31
// hold the float32 and float64 sums.
var neonConsts = []struct {
	name string
	bits uint32
}{
	{"lo", math.Float32bits(-88)},
	{"log2e", math.Float32bits(float32(math.Log2E))},
	{"mag", math.Float32bits(12582912.0)},
	{"negln2", math.Float32bits(float32(-math.Ln2))},
	{"free", 0},
	{"p0", math.Float32bits(1.9875691500e-4)},
	{"p1", math.Float32bits(1.3981999507e-3)},
	{"p2", math.Float32bits(8.3334519073e-3)},
	{"p3", math.Float32bits(4.1665795894e-2)},
	{"p4", math.Float32bits(1.6666665459e-1)},
	{"p5", math.Float32bits(5.0000001201e-1)},
	{"one", math.Float32bits(1)},
	{"expadd", uint32(127) - math.Float32bits(12582912.0)},
}

// loadConsts loads neonConsts into V17–V29 (R5 scratch).
func (a *a64) loadConsts() {
	a.f("MOVD $xent_neon<>(SB), R5")
	for v := 17; v < 17+len(neonConsts); v += 4 {
		switch left := 17 + len(neonConsts) - v; {
		case left >= 4:
			a.load4("R5", v)
		default:
			for i := range left {
				a.f("VLD1.P 16(R5), [V%d.S4]", v+i)
			}
		}
	}
}

// exp sets Vx = exp(Vx - m) (clobbering t0..t2), for x - m ≤ 64:
//
//	d = max(x - m, -88)            (NaN stays NaN)
//	t = d·log2e + 1.5·2^23; n = t - 1.5·2^23 = round(d/ln2)
//	r = d - n·ln2                  (ln2 rounded to float32: |n|·1.9e-9 off)
//	e = 2^n·(1 + r + r²·P(r))      (2^n from the bits of t; 0 for n = -127)
func (a *a64) exp(x, t0, t1, t2 int) {
	a.fsub(x, x, 16)
	a.fmax(x, x, 17)
	a.mov(t0, 19)
	a.fmla(t0, x, 18) // t = mag + d·log2e
	a.fsub(t1, t0, 19)
	a.fmla(x, t1, 20) // r = d - n·ln2
	a.mov(t1, 22)     // P0
	for c := 23; c <= 27; c++ {
		a.mov(t2, c)
		a.fmla(t2, t1, x) // c + p·r
		t1, t2 = t2, t1
	}
	a.fmul(t2, x, x)   // r²
	a.fmul(t1, t1, t2) // r²·P
	a.fadd(x, x, t1)
	a.fadd(x, x, 28)
	a.addInt(t0, t0, 29)
	a.shl(t0, t0, 23)
	a.fmul(x, x, t0)
}

// expSum writes expSumNEON (or expSumMaxNEON): Block-sized blocks summed
// in float32 lanes, widened to float64 across, as on amd64.
func (a *a64) expSum(withMax bool) {
	name := "expSumNEON"
	if withMax {
		name = "expSumMaxNEON"
		a.f("// %s is expSumNEON without stores that also returns max_j x_j ignoring NaN (len(x) a multiple of 16).", name)
		fmt.Fprintf(&a.b, "TEXT ·%s(SB), NOSPLIT, $0-68\n", name)
		a.f("MOVD x_base+0(FP), R1")
		a.f("MOVD x_len+8(FP), R2")
		a.f("FMOVS m+24(FP), F16")
		a.f("MOVD pre_base+32(FP), R3")
		a.f("MOVD pre_len+40(FP), R4")
		a.f("MOVD ZR, R7")
	} else {
		a.f("// %s returns Σ_j exp(x_j - m) (len(x) a multiple of 16) and stores the exps in dst when len(dst) > 0.", name)
		fmt.Fprintf(&a.b, "TEXT ·%s(SB), NOSPLIT, $0-88\n", name)
		a.f("MOVD dst_base+0(FP), R0")
		a.f("MOVD dst_len+8(FP), R7")
		a.f("MOVD x_base+24(FP), R1")
		a.f("MOVD x_len+32(FP), R2")
		a.f("FMOVS m+48(FP), F16")
		a.f("MOVD pre_base+56(FP), R3")
		a.f("MOVD pre_len+64(FP), R4")
	}
	a.f("VDUP V16.S[0], V16.S4")
	a.loadConsts()
	if withMax {
		a.f("MOVW $0xff800000, R8")
		a.f("VDUP R8, V21.S4") // the max so far: -Inf
	}
	a.zero(31)
	for _, store := range []bool{false, true} {
		if withMax && store {
			break
		}
		l := fmt.Sprintf("%s_s%v", name, store)
		if !withMax && !store {
			a.f("CBNZ R7, %s_strue_blocks", name)
		}
		a.label(l + "_blocks")
		a.zero(30)
		a.f("CMP $%d, R2", block)
		a.f("BLT %s_rest", l)
		a.f("MOVD $%d, R6", block/16)
		a.f("SUB $%d, R2", block)
		a.f("B %s_inner", l)
		a.label(l + "_rest") // fewer than a block left: a whole number of steps
		a.f("CBZ R2, %s_done", l)
		a.f("LSR $4, R2, R6")
		a.f("MOVD ZR, R2")
		a.label(l + "_inner")
		a.f("CMP $0, R4")
		a.f("BLE %s_nopf", l)
		a.f("PRFM (R3), PLDL1KEEP")
		a.f("ADD $64, R3")
		a.f("SUB $16, R4")
		a.label(l + "_nopf")
		a.load4("R1", 0)
		if withMax {
			for v := range 4 {
				a.fmaxnm(21, 21, v)
			}
		}
		for v := range 4 {
			a.exp(v, 4+3*v, 5+3*v, 6+3*v)
		}
		if store {
			a.store4("R0", 0)
		}
		for v := range 4 {
			a.fadd(30, 30, v)
		}
		a.f("SUBS $1, R6")
		a.f("BNE %s_inner", l)
		a.fcvtl(4, 30)
		a.fcvtl2(5, 30)
		a.fadd2d(31, 31, 4)
		a.fadd2d(31, 31, 5)
		a.f("B %s_blocks", l)
		a.label(l + "_done")
		a.f("B %s_end", name)
	}
	a.label(name + "_end")
	a.faddpD(0, 31)
	if withMax {
		a.f("FMOVD F0, sum+56(FP)")
		a.fmaxnmv(1, 21)
		a.f("FMOVS F1, cm+64(FP)")
	} else {
		a.f("FMOVD F0, ret+80(FP)")
	}
	a.f("RET")
	a.b.WriteString("\n")
}

// maxNaN writes maxNaNNEON: the max ignoring NaN (FMAXNM) and, in a
// second set of accumulators, the max that keeps NaN (FMAX), whose
// result is NaN exactly when x holds one.
func (a *a64) maxNaN() {
	a.f("// maxNaNNEON returns max_j x_j ignoring NaN (-Inf for an empty x) and whether x holds a NaN (len(x) a multiple of 16).")
	b := &a.b
	fmt.Fprintf(b, "TEXT ·maxNaNNEON(SB), NOSPLIT, $0-29\n")
	a.f("MOVD x_base+0(FP), R1")
	a.f("MOVD x_len+8(FP), R2")
	a.f("MOVW $0xff800000, R8")
	for v := 16; v < 24; v++ {
		a.f("VDUP R8, V%d.S4", v)
	}
	a.f("CBZ R2, maxNaNNEON_end")
	a.label("maxNaNNEON_loop")
	a.load4("R1", 0)
	for v := range 4 {
		a.fmaxnm(16+v, 16+v, v)
		a.fmax(20+v, 20+v, v)
	}
	a.f("SUBS $16, R2")
	a.f("BNE maxNaNNEON_loop")
	a.label("maxNaNNEON_end")
	a.fmaxnm(16, 16, 17)
	a.fmaxnm(18, 18, 19)
	a.fmaxnm(16, 16, 18)
	a.fmax(20, 20, 21)
	a.fmax(22, 22, 23)
	a.fmax(20, 20, 22)
	a.fmaxnmv(0, 16)
	a.fmaxv(1, 20)
	a.f("FMOVS F0, m+24(FP)")
	a.f("FCMPS F1, F1")
	a.f("CSET VS, R3")
	a.f("MOVB R3, nan+28(FP)")
	a.f("RET")
	b.WriteString("\n")
}

// sum writes sumNEON, the read probe's loop.
func (a *a64) sum() {
	a.f("// sumNEON returns Σ_j x_j in float32 lanes, four vectors a step (len(x) a multiple of 16).")
	fmt.Fprintf(&a.b, "TEXT ·sumNEON(SB), NOSPLIT, $0-28\n")
	a.f("MOVD x_base+0(FP), R1")
	a.f("MOVD x_len+8(FP), R2")
	for v := 16; v < 20; v++ {
		a.zero(v)
	}
	a.f("CBZ R2, sumNEON_end")
	a.label("sumNEON_loop")
	a.load4("R1", 0)
	for v := range 4 {
		a.fadd(16+v, 16+v, v)
	}
	a.f("SUBS $16, R2")
	a.f("BNE sumNEON_loop")
	a.label("sumNEON_end")
	a.fadd(16, 16, 17)
	a.fadd(18, 18, 19)
	a.fadd(16, 16, 18)
	a.faddp(16, 16, 16)
	a.faddpS(0, 16)
	a.f("FMOVS F0, ret+24(FP)")
	a.f("RET")
	a.b.WriteString("\n")
}

// scale writes scaleNEON.
func (a *a64) scale() {
	a.f("// scaleNEON sets dst_j *= c (len(dst) a multiple of 16).")
	fmt.Fprintf(&a.b, "TEXT ·scaleNEON(SB), NOSPLIT, $0-28\n")
	a.f("MOVD dst_base+0(FP), R0")
	a.f("MOVD dst_len+8(FP), R2")
	a.f("FMOVS c+24(FP), F16")
	a.f("VDUP V16.S[0], V16.S4")
	a.f("MOVD R0, R1")
	a.f("CBZ R2, scaleNEON_end")
	a.label("scaleNEON_loop")
	a.load4("R1", 0)
	for v := range 4 {
		a.fmul(v, v, 16)
	}
	a.store4("R0", 0)
	a.f("SUBS $16, R2")
	a.f("BNE scaleNEON_loop")
	a.label("scaleNEON_end")
	a.f("RET")
	a.b.WriteString("\n")
}

const arm64Stubs = `// Code generated by command: go run ./internal/asmgen -arm64 row_arm64.s -arm64stubs row_stub_arm64.go. DO NOT EDIT.

//go:build !purego

package cpu

// maxNaNNEON returns max_j x_j ignoring NaN (-Inf for an empty x) and whether x holds a NaN (len(x) a multiple of 16).
//
//go:noescape
func maxNaNNEON(x []float32) (m float32, nan bool)

// expSumNEON returns Σ_j exp(x_j - m) (len(x) a multiple of 16, x_j - m ≤ 64), summed in float32 lanes over each Block and
// in float64 lanes across, and stores each exp in dst_j when len(dst) > 0 (dst may be x). It prefetches pre.
//
//go:noescape
func expSumNEON(dst, x []float32, m float32, pre []float32) float64

// expSumMaxNEON is expSumNEON without stores that also returns max_j x_j ignoring NaN from the same loop, with the same sum
// bit for bit (NaN when x holds a NaN).
//
//go:noescape
func expSumMaxNEON(x []float32, m float32, pre []float32) (sum float64, cm float32)

// scaleNEON sets dst_j *= c (len(dst) a multiple of 16).
//
//go:noescape
func scaleNEON(dst []float32, c float32)
`

// genARM64 writes the arm64 kernels and their declarations.
func genARM64(out, stubs string) error {
	a := &a64{}
	a.b.WriteString("// Code generated by command: go run ./internal/asmgen -arm64 row_arm64.s -arm64stubs row_stub_arm64.go. DO NOT EDIT.\n\n")
	a.b.WriteString("//go:build !purego\n\n#include \"textflag.h\"\n\n")
	a.maxNaN()
	a.expSum(false)
	a.expSum(true)
	a.scale()
	for i, c := range neonConsts {
		for k := range 4 {
			fmt.Fprintf(&a.b, "DATA xent_neon<>+%d(SB)/4, $0x%08x\n", 16*i+4*k, c.bits)
		}
	}
	fmt.Fprintf(&a.b, "GLOBL xent_neon<>(SB), RODATA|NOPTR, $%d\n", 16*len(neonConsts))
	if err := os.WriteFile(out, []byte(a.b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(stubs, []byte(arm64Stubs), 0o644)
}

// genARM64Probes writes the read probe's NEON loop (package
// bench/internal/probe) and its declaration.
func genARM64Probes(out, stubs string) error {
	a := &a64{}
	a.b.WriteString("// Code generated by command: go run . -probes -arm64 probe_arm64.s -arm64stubs probe_stub_arm64.go. DO NOT EDIT.\n\n")
	a.b.WriteString("//go:build !purego\n\n#include \"textflag.h\"\n\n")
	a.sum()
	if err := os.WriteFile(out, []byte(a.b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(stubs, []byte(arm64ProbeStubs), 0o644)
}

const arm64ProbeStubs = `// Code generated by command: go run . -probes -arm64 probe_arm64.s -arm64stubs probe_stub_arm64.go. DO NOT EDIT.

//go:build !purego

package probe

// sumNEON returns Σ_j x_j in float32 lanes, four vectors a step (len(x) a multiple of 16).
//
//go:noescape
func sumNEON(x []float32) float32
`
