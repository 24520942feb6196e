// Command asmgen generates package cpu's amd64 kernels (row_amd64.s and
// their declarations, row_stub_amd64.go) with avo: each kernel is written
// once, below, and emitted for AVX2 + FMA (8 lanes, YMM) and for AVX-512
// (16 lanes, ZMM, masked tails). Run it through go generate in package
// cpu; CI checks that the committed files are what it writes. With
// -probes it writes the benchmarks' probes instead (the read loop and the
// FMA peak, package bench/internal/probe), from the same code.
//
// Every kernel handles any length: the vector loop, then the last
// len mod lanes elements through the same arithmetic with masked loads and
// stores (VMASKMOVPS with a mask vector on AVX2, opmask registers on
// AVX-512), so nothing is copied or padded and nothing past a slice is
// read or written. Each ends with VZEROUPPER, so the scalar Go code after
// it pays no AVX-to-SSE transition.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// block is cpu.Block: the number of elements summed in float32 lanes
// before the lane sums are widened into float64 lanes.
const block = 256

// isa is one instruction set the kernels are emitted for.
type isa struct {
	name   string // suffix of the kernels' names
	lanes  int    // float32 lanes of a vector
	avx512 bool
}

var (
	avx2   = isa{name: "AVX2", lanes: 8}
	avx512 = isa{name: "AVX512", lanes: 16, avx512: true}
)

// vec allocates a vector register.
func (s isa) vec() reg.VecVirtual {
	if s.avx512 {
		return ZMM()
	}
	return YMM()
}

// bytes is the size of a vector.
func (s isa) bytes() int { return 4 * s.lanes }

// half returns the lower half of v (YMM of a ZMM, XMM of a YMM).
func (s isa) half(v reg.VecVirtual) reg.Register {
	if s.avx512 {
		return v.AsY()
	}
	return v.AsX()
}

// Constants: each is 16 copies of a float32 (64 bytes), so that AVX2 code
// can use it as a 256-bit memory operand and AVX-512 code as a 512-bit
// one, and either can broadcast its first element.
var consts = map[string]Mem{}

func vconst(name string, bits uint32) Mem {
	if m, ok := consts[name]; ok {
		return m
	}
	m := GLOBL("xent_"+name, RODATA|NOPTR)
	for i := range 16 {
		DATA(4*i, U32(bits))
	}
	consts[name] = m
	return m
}

func fconst(name string, v float32) Mem { return vconst(name, math.Float32bits(v)) }

// expTable is 2^(j/8) less j<<20, for j = i mod 8, twice over (VPERMPS
// takes the low 3 index bits of 8 entries, or the low 4 of 16): adding the
// bits of t << 20 (t = n + 1.5·2^23, n = 8k + j) then adds k to the
// exponent.
func expTable() Mem {
	if m, ok := consts["exptab"]; ok {
		return m
	}
	m := GLOBL("xent_exptab", RODATA|NOPTR)
	for i := range 16 {
		j := i % 8
		DATA(4*i, U32(math.Float32bits(float32(math.Exp2(float64(j)/8)))-uint32(j)<<20))
	}
	consts["exptab"] = m
	return m
}

// maskTable is 8 words of all ones, then 8 of zeros: the 8 words at
// element 8-r have ones in lanes 0..r-1 (AVX2 tails).
func maskTable() Mem {
	if m, ok := consts["masktab"]; ok {
		return m
	}
	m := GLOBL("xent_masktab", RODATA|NOPTR)
	for i := range 16 {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
	consts["masktab"] = m
	return m
}

// bcast loads the constant (or the float32 in the low lane of an XMM
// register) into every lane of a new vector register.
func (s isa) bcast(src Op) reg.VecVirtual {
	v := s.vec()
	VBROADCASTSS(src, v)
	return v
}

// konst returns a constant as an operand: a register on AVX-512 (32 of
// them), the memory operand on AVX2, whose 16 registers the loops need.
func (s isa) konst(m Mem) Op {
	if s.avx512 {
		return s.bcast(m)
	}
	return m
}

// tail is the mask of the first r < lanes lanes.
type tail struct {
	s isa
	k reg.Register   // AVX-512
	y reg.VecVirtual // AVX2
}

// tailMask builds the mask of the first r lanes (0 < r < lanes).
func (s isa) tailMask(r reg.GPVirtual) tail {
	if s.avx512 {
		t := GP32()
		MOVL(U32(0xffff), t)
		BZHIL(r.As32(), t, t)
		k := K()
		KMOVW(t, k)
		return tail{s: s, k: k}
	}
	p, i := GP64(), GP64()
	LEAQ(maskTable(), p)
	MOVQ(U64(8), i)
	SUBQ(r, i)
	y := YMM()
	VMOVUPS(Mem{Base: p, Index: i, Scale: 4}, y)
	return tail{s: s, y: y}
}

// load loads the masked lanes of m into v, zeros elsewhere.
func (t tail) load(m Mem, v reg.VecVirtual) {
	if t.s.avx512 {
		VMOVUPS_Z(m, t.k, v)
		return
	}
	VMASKMOVPS(m, t.y, v)
}

// loadInto loads the masked lanes of m into v, keeping v's other lanes.
func (t tail) loadInto(m Mem, v reg.VecVirtual) {
	if t.s.avx512 {
		VMOVUPS(m, t.k, v)
		return
	}
	u := YMM()
	VMASKMOVPS(m, t.y, u)
	VBLENDVPS(t.y, u, v, v)
}

// store stores the masked lanes of v to m.
func (t tail) store(v reg.VecVirtual, m Mem) {
	if t.s.avx512 {
		VMOVUPS(v, t.k, m)
		return
	}
	VMASKMOVPS(v, t.y, m)
}

// zero zeros v's lanes outside the mask.
func (t tail) zero(v reg.VecVirtual) {
	if t.s.avx512 {
		VMOVAPS_Z(v, t.k, v)
		return
	}
	VANDPS(t.y, v, v)
}

// reduce folds the lanes of v with op (VMAXPS or VADDPS) into its low
// lane, returned as an XMM register.
func (s isa) reduce(v reg.VecVirtual, op func(...Op)) reg.VecVirtual {
	y := v
	if s.avx512 {
		h := YMM()
		VEXTRACTF64X4(Imm(1), v, h)
		op(h, v.AsY(), h)
		y = h
	}
	x := XMM()
	VEXTRACTF128(Imm(1), y, x)
	op(x, y.AsX(), x)
	t := XMM()
	VPERMILPS(Imm(0x4e), x, t)
	op(t, x, x)
	VPERMILPS(Imm(0xb1), x, t)
	op(t, x, x)
	return x
}

// widen adds the float32 lanes of v to the float64 lanes of acc (two
// vectors: the low and high halves of v).
func (s isa) widen(v reg.VecVirtual, acc [2]reg.VecVirtual) {
	lo, hi := s.vec(), s.vec()
	VCVTPS2PD(s.half(v), lo)
	h := s.half(s.vec())
	if s.avx512 {
		VEXTRACTF64X4(Imm(1), v, h)
	} else {
		VEXTRACTF128(Imm(1), v, h)
	}
	VCVTPS2PD(h, hi)
	VADDPD(lo, acc[0], acc[0])
	VADDPD(hi, acc[1], acc[1])
}

// sum64 returns the sum of the float64 lanes of acc in the low lane of an
// XMM register, in a fixed order.
func (s isa) sum64(acc [2]reg.VecVirtual) reg.VecVirtual {
	a := acc[0]
	VADDPD(acc[1], a, a)
	y := a
	if s.avx512 {
		h := YMM()
		VEXTRACTF64X4(Imm(1), a, h)
		VADDPD(h, a.AsY(), h)
		y = h
	}
	x := XMM()
	VEXTRACTF128(Imm(1), y, x)
	VADDPD(x, y.AsX(), x)
	t := XMM()
	VPERMILPD(Imm(1), x, t)
	VADDPD(t, x, x)
	return x
}

func (s isa) zeroVec() reg.VecVirtual {
	v := s.vec()
	VXORPS(v, v, v)
	return v
}

// slice loads a []float32 parameter's base pointer and length.
func slice(name string) (reg.GPVirtual, reg.GPVirtual) {
	p, n := GP64(), GP64()
	Load(Param(name).Base(), p)
	Load(Param(name).Len(), n)
	return p, n
}

// label names a label of the current kernel.
type labels string

func (l labels) L(name string) string { return string(l) + "_" + name }

// loop emits: while n ≥ step { body(); p += 4·step for each p; n -= step }.
func loop(l labels, name string, n reg.GPVirtual, step int, ptrs []reg.GPVirtual, body func()) {
	loopSized(l, name, n, step, ptrs, []int{4, 4, 4, 4}, body)
}

// loopSized is loop with pointer i advancing by sizes[i]·step bytes.
func loopSized(l labels, name string, n reg.GPVirtual, step int, ptrs []reg.GPVirtual, sizes []int, body func()) {
	Label(l.L(name))
	CMPQ(n, U32(step))
	JL(LabelRef(l.L(name + "_end")))
	body()
	for i, p := range ptrs {
		ADDQ(U32(sizes[i]*step), p)
	}
	SUBQ(U32(step), n)
	JMP(LabelRef(l.L(name)))
	Label(l.L(name + "_end"))
}

// ifTail emits: if n > 0 { body(mask of the first n lanes) }.
func (s isa) ifTail(l labels, n reg.GPVirtual, body func(t tail)) {
	TESTQ(n, n)
	JZ(LabelRef(l.L("tail_end")))
	body(s.tailMask(n))
	Label(l.L("tail_end"))
}

// ---- max ----

// maxNaN: m = max_j x_j ignoring NaN (-Inf for an empty x); nan = x holds
// a NaN. VMAXPS returns its second (Intel) source when either is NaN: the
// running max is that source, so a NaN lane leaves it; NaN lanes are
// counted by an unordered compare.
func (s isa) maxNaN() {
	TEXT("maxNaN"+s.name, NOSPLIT, "func(x []float32) (m float32, nan bool)")
	Doc("maxNaN" + s.name + " returns max_j x_j ignoring NaN (-Inf for an empty x) and whether x holds a NaN.")
	l := labels("max" + s.name)
	p, n := slice("x")
	ninf := vconst("ninf", 0xff800000)
	var m [4]reg.VecVirtual
	for i := range m {
		m[i] = s.bcast(ninf)
	}
	var nanv reg.VecVirtual
	var nank reg.Register
	if s.avx512 {
		nank = K()
		KXORW(nank, nank, nank)
	} else {
		nanv = s.zeroVec()
	}
	isnan := func(v reg.VecVirtual) {
		if s.avx512 {
			k := K()
			VCMPPS(Imm(3), v, v, k)
			KORW(k, nank, nank)
			return
		}
		t := s.vec()
		VCMPPS(Imm(3), v, v, t)
		VORPS(t, nanv, nanv)
	}
	step := func(acc reg.VecVirtual, v reg.VecVirtual) {
		VMAXPS(acc, v, acc) // Intel: acc = max(v, acc), acc when v is NaN
		isnan(v)
	}
	loop(l, "x4", n, 4*s.lanes, []reg.GPVirtual{p}, func() {
		for i := range m {
			v := s.vec()
			VMOVUPS(Mem{Base: p, Disp: i * s.bytes()}, v)
			step(m[i], v)
		}
	})
	loop(l, "x1", n, s.lanes, []reg.GPVirtual{p}, func() {
		v := s.vec()
		VMOVUPS(Mem{Base: p}, v)
		step(m[0], v)
	})
	s.ifTail(l, n, func(t tail) {
		v := s.bcast(ninf)
		t.loadInto(Mem{Base: p}, v)
		step(m[1], v)
	})
	VMAXPS(m[1], m[0], m[0])
	VMAXPS(m[3], m[2], m[2])
	VMAXPS(m[2], m[0], m[0])
	x := s.reduce(m[0], VMAXPS)
	b := GP8()
	if s.avx512 {
		KORTESTW(nank, nank)
	} else {
		VPTEST(nanv, nanv)
	}
	SETNE(b)
	VZEROUPPER()
	Store(x, ReturnIndex(0))
	Store(b, ReturnIndex(1))
	RET()
}

// ---- sum (the read probe) ----

func (s isa) sum() {
	TEXT("sum"+s.name, NOSPLIT, "func(x []float32) float32")
	Doc("sum" + s.name + " returns Σ_j x_j in float32 lanes: the read probe's loop, four vectors a step.")
	l := labels("sum" + s.name)
	p, n := slice("x")
	var a [4]reg.VecVirtual
	for i := range a {
		a[i] = s.zeroVec()
	}
	loop(l, "x4", n, 4*s.lanes, []reg.GPVirtual{p}, func() {
		for i := range a {
			VADDPS(Mem{Base: p, Disp: i * s.bytes()}, a[i], a[i])
		}
	})
	loop(l, "x1", n, s.lanes, []reg.GPVirtual{p}, func() {
		VADDPS(Mem{Base: p}, a[0], a[0])
	})
	s.ifTail(l, n, func(t tail) {
		v := s.vec()
		t.load(Mem{Base: p}, v)
		VADDPS(v, a[1], a[1])
	})
	VADDPS(a[1], a[0], a[0])
	VADDPS(a[3], a[2], a[2])
	VADDPS(a[2], a[0], a[0])
	x := s.reduce(a[0], VADDPS)
	VZEROUPPER()
	Store(x, ReturnIndex(0))
	RET()
}

// ---- FMA peak ----

// fmaChains is the number of independent FMA chains of the peak probe:
// enough to cover two FMA units' latency (4 to 5 cycles) on every CPU
// the kernels run on.
const fmaChains = 10

func (s isa) fma() {
	TEXT("fma"+s.name, NOSPLIT, "func(iters int) float32")
	Doc("fma"+s.name+" runs iters steps of", fmt.Sprint(fmaChains), "independent vector FMAs (the FMA peak probe: 2·lanes flops each)",
		"and returns a lane of their sum, so that they are computed.")
	l := labels("fma" + s.name)
	n := GP64()
	Load(Param("iters"), n)
	var a [fmaChains]reg.VecVirtual
	for i := range a {
		a[i] = s.bcast(fconst("one", 1))
	}
	m := s.bcast(fconst("fmaM", 0.999999))
	c := s.bcast(fconst("fmaC", 1e-7))
	Label(l.L("loop"))
	TESTQ(n, n)
	JZ(LabelRef(l.L("end")))
	for i := range a {
		VFMADD213PS(c, m, a[i]) // a = m·a + c
	}
	DECQ(n)
	JMP(LabelRef(l.L("loop")))
	Label(l.L("end"))
	for i := 1; i < len(a); i++ {
		VADDPS(a[i], a[0], a[0])
	}
	VZEROUPPER()
	Store(a[0].AsX(), ReturnIndex(0))
	RET()
}

// ---- exp ----

// expK are the vector exp's constants (registers or memory operands).
type expK struct {
	sv                           reg.VecVirtual // the reference m
	lo, k8, mag, nC, c3, c2, one Op
	tab                          Op
}

func (s isa) expConsts(m reg.Register) expK {
	k := expK{
		sv:  s.bcast(m),
		lo:  s.bcast(fconst("lo", -88)),
		k8:  s.bcast(fconst("k8", float32(8*math.Log2E))),
		mag: s.bcast(fconst("mag", 12582912.0)), // 1.5·2^23
		nC:  s.konst(fconst("nC", float32(-math.Ln2/8))),
		c3:  s.konst(fconst("c3", 0.16667117178440094)), // minimax on [-ln2/16, ln2/16]
		c2:  s.konst(fconst("c2", 0.5000671148300171)),
		one: s.konst(fconst("one", 1)),
	}
	if s.avx512 {
		t := ZMM()
		VMOVUPS(expTable(), t)
		k.tab = t
	} else {
		k.tab = expTable()
	}
	return k
}

// exp returns exp(d) for d ≤ 64 in d's lanes (d is clobbered; NaN stays
// NaN, and so does +Inf, as Inf - Inf), as cpu's vector.go documents:
//
//	d = max(d, -88); t = d·8/ln2 + 1.5·2^23; n = t - 1.5·2^23 = 8k + j
//	r = d + n·nC (nC = -ln2/8 in float32), s = bits(tab[j]) + bits(t)<<20
//	e = (s·r)·(1 + c2·r + c3·r²) + s
func (s isa) exp(d reg.VecVirtual, k expK) reg.VecVirtual {
	VMAXPS(d, k.lo, d) // Intel: max(lo, d), d when d is NaN: NaN stays NaN
	t := s.vec()
	VMOVAPS(k.k8, t)
	VFMADD213PS(k.mag, d, t) // t = d·k8 + mag
	r := s.vec()
	VSUBPS(k.mag, t, r)     // r = n
	VFMADD231PS(k.nC, r, d) // d = d + n·nC
	sc := s.vec()
	VPERMPS(k.tab, t, sc)
	VPSLLD(Imm(20), t, t)
	VPADDD(t, sc, sc)
	p := t
	VMOVUPS(k.c3, p)
	VFMADD213PS(k.c2, d, p)  // c3·r + c2
	VFMADD213PS(k.one, d, p) // (c3·r + c2)·r + 1
	VMULPS(sc, d, d)         // s·r
	VFMADD213PS(sc, p, d)    // (s·r)·poly + s
	return d
}

// expSum: Σ_j exp(x_j - m), each exp stored in dst_j when len(dst) > 0
// (dst may be x), the lanes summed in float32 over each block and in
// float64 across. One line of pre is prefetched (PREFETCHT0) for each line
// of x. With withMax (no dst) the same loop also finds max_j x_j and
// whether x holds a NaN (as maxNaN), so that a forward pass reads each
// chunk once; its sum is the same, bit for bit, as without.
func (s isa) expSum(withMax bool) { s.expSumOf(withMax, "") }

// expSumMaxHalf is expSumMax over bfloat16 or float16 elements (elem
// "BF16" or "F16"), each widened in a register as it is loaded (as
// fromHalf widens them): the forward pass reads half the bytes and stores
// nothing. It takes whole vectors only (the Go side does the rest).
func (s isa) expSumMaxHalf(elem string) { s.expSumOf(true, elem) }

func (s isa) expSumOf(withMax bool, elem string) {
	name := "expSum" + s.name
	size := 4 // the bytes of an element of x
	if elem != "" {
		size = 2
		name = "expSumMax" + elem + s.name
		TEXT(name, NOSPLIT, "func(x []uint16, m float32, pre []float32) (sum float64, cm float32)")
		Doc(name+" is expSumMax"+s.name+" over "+elem+" elements, widened as they are loaded, for len(x) rounded down to a",
			"whole vector (the rest is the caller's); pre is prefetched as by expSumMax"+s.name+".")
	} else if withMax {
		name = "expSumMax" + s.name
		TEXT(name, NOSPLIT, "func(x []float32, m float32, pre []float32) (sum float64, cm float32)")
		Doc(name+" is expSum"+s.name+" without stores (m finite) that also returns max_j x_j ignoring NaN from the same loop:",
			"the sum is that of expSum"+s.name+", bit for bit (NaN when x holds a NaN: the exp keeps it).")
	} else {
		TEXT(name, NOSPLIT, "func(dst, x []float32, m float32, pre []float32) float64")
		Doc(name+" returns Σ_j exp(x_j - m) (x_j - m ≤ 64), summed in float32 lanes over each Block and in float64 lanes across,",
			"and stores each exp in dst_j when len(dst) > 0 (dst may be x). It prefetches pre, one line per line of x.")
	}
	// load loads the vector of x at (float32) byte offset off.
	load := func(p reg.GPVirtual, off int, d reg.VecVirtual) {
		switch elem {
		case "BF16":
			VPMOVZXWD(Mem{Base: p, Disp: off / 2}, d)
			VPSLLD(U8(16), d, d)
		case "F16":
			VCVTPH2PS(Mem{Base: p, Disp: off / 2}, d)
		default:
			VMOVUPS(Mem{Base: p, Disp: off}, d)
		}
	}
	l := labels(name)
	var dp, dn reg.GPVirtual
	if !withMax {
		dp, dn = slice("dst")
	}
	p, n := slice("x")
	pp, pn := slice("pre")
	mx := Load(Param("m"), XMM())
	k := s.expConsts(mx)
	acc := [2]reg.VecVirtual{s.zeroVec(), s.zeroVec()}
	var mv reg.VecVirtual
	if withMax {
		mv = s.bcast(vconst("ninf", 0xff800000))
	}
	// maxOf folds v into the max (a NaN shows in the sum instead).
	maxOf := func(v reg.VecVirtual) {
		VMAXPS(mv, v, mv) // Intel: mv = max(v, mv), mv when v is NaN
	}
	prefetch := func(lines int) {
		for range lines {
			skip := l.L(fmt.Sprintf("pf%d", pfLabel))
			pfLabel++
			CMPQ(pn, U32(0))
			JLE(LabelRef(skip))
			PREFETCHT0(Mem{Base: pp})
			ADDQ(U32(64), pp)
			SUBQ(U32(16), pn)
			Label(skip)
		}
	}
	variants := []bool{false, true}
	if withMax {
		variants = []bool{false}
	}
	for _, store := range variants {
		lv := labels(fmt.Sprintf("%s_s%v", l, store))
		if !withMax && !store {
			TESTQ(dn, dn)
			JNZ(LabelRef(l.L("store")))
		} else if store {
			Label(l.L("store"))
		}
		ptrs := []reg.GPVirtual{p}
		if store {
			ptrs = append(ptrs, dp)
		}
		one := func(off int, a reg.VecVirtual) {
			d := s.vec()
			load(p, off, d)
			if withMax {
				maxOf(d)
			}
			VSUBPS(k.sv, d, d) // x - m
			e := s.exp(d, k)
			if store {
				VMOVUPS(e, Mem{Base: dp, Disp: off})
			}
			VADDPS(e, a, a)
		}
		Label(lv.L("blocks"))
		CMPQ(n, U32(block))
		JL(LabelRef(lv.L("blocks_end")))
		{
			a0, a1 := s.zeroVec(), s.zeroVec()
			c := GP64()
			MOVQ(U32(block/(2*s.lanes)), c)
			Label(lv.L("inner"))
			prefetch(max(1, 2*s.lanes*size/64))
			one(0, a0)
			one(s.bytes(), a1)
			ADDQ(U32(2*s.lanes*size), p)
			if store {
				ADDQ(U32(2*s.bytes()), dp)
			}
			DECQ(c)
			JNZ(LabelRef(lv.L("inner")))
			VADDPS(a1, a0, a0)
			s.widen(a0, acc)
			SUBQ(U32(block), n)
			JMP(LabelRef(lv.L("blocks")))
		}
		Label(lv.L("blocks_end"))
		a := s.zeroVec()
		loopSized(lv, "x1", n, s.lanes, ptrs, []int{size, 4}, func() { one(0, a) })
		if elem != "" { // whole vectors only
			s.widen(a, acc)
			JMP(LabelRef(l.L("done")))
			continue
		}
		s.ifTail(lv, n, func(t tail) {
			v := s.vec()
			if withMax {
				VMOVUPS(vconst("ninf", 0xff800000), v) // -Inf outside the mask: neutral for the max
				t.loadInto(Mem{Base: p}, v)
				maxOf(v)
			} else {
				t.load(Mem{Base: p}, v)
			}
			VSUBPS(k.sv, v, v)
			e := s.exp(v, k)
			t.zero(e)
			if store {
				t.store(e, Mem{Base: dp})
			}
			VADDPS(e, a, a)
		})
		s.widen(a, acc)
		JMP(LabelRef(l.L("done")))
	}
	Label(l.L("done"))
	x := s.sum64(acc)
	if withMax {
		cm := s.reduce(mv, VMAXPS)
		VZEROUPPER()
		Store(x, ReturnIndex(0))
		Store(cm, ReturnIndex(1))
		RET()
		return
	}
	VZEROUPPER()
	Store(x, ReturnIndex(0))
	RET()
}

var pfLabel int

// ---- scale ----

func (s isa) scale() {
	TEXT("scale"+s.name, NOSPLIT, "func(dst []float32, c float32)")
	Doc("scale" + s.name + " sets dst_j *= c.")
	l := labels("scale" + s.name)
	p, n := slice("dst")
	c := s.bcast(Load(Param("c"), XMM()))
	loop(l, "x4", n, 4*s.lanes, []reg.GPVirtual{p}, func() {
		for i := range 4 {
			v := s.vec()
			VMULPS(Mem{Base: p, Disp: i * s.bytes()}, c, v)
			VMOVUPS(v, Mem{Base: p, Disp: i * s.bytes()})
		}
	})
	loop(l, "x1", n, s.lanes, []reg.GPVirtual{p}, func() {
		v := s.vec()
		VMULPS(Mem{Base: p}, c, v)
		VMOVUPS(v, Mem{Base: p})
	})
	s.ifTail(l, n, func(t tail) {
		v := s.vec()
		t.load(Mem{Base: p}, v)
		VMULPS(v, c, v)
		t.store(v, Mem{Base: p})
	})
	VZEROUPPER()
	RET()
}

// ---- index, countAbove ----

// scanMask walks x (p, n; n counts down, j up from 0) a vector at a time,
// then its masked tail, setting bits to the lanes' mask of the ordered
// compare x_lane pred v (an avo VCMPPS predicate: 0 EQ_OQ, 0x1e GT_OQ;
// the tail's lanes past n are 0) and calling each after every vector;
// then it goes to the label end.
func (s isa) scanMask(l labels, p, n, j reg.GPVirtual, pred uint8, vv reg.VecVirtual, bits reg.GPVirtual, each func(), end string) {
	cmp := func(v reg.VecVirtual, t *tail) {
		if s.avx512 {
			k := K()
			VCMPPS(Imm(uint64(pred)), vv, v, k)
			if t != nil {
				KANDW(t.k, k, k)
			}
			KMOVW(k, bits.As32())
			return
		}
		c := s.vec()
		VCMPPS(Imm(uint64(pred)), vv, v, c)
		if t != nil {
			VANDPS(t.y, c, c)
		}
		VMOVMSKPS(c, bits.As32())
	}
	XORQ(j, j)
	Label(l.L("x1"))
	CMPQ(n, U32(s.lanes))
	JL(LabelRef(l.L("x1_end")))
	{
		v := s.vec()
		VMOVUPS(Mem{Base: p, Index: j, Scale: 4}, v)
		cmp(v, nil)
		each()
		ADDQ(U32(s.lanes), j)
		SUBQ(U32(s.lanes), n)
		JMP(LabelRef(l.L("x1")))
	}
	Label(l.L("x1_end"))
	TESTQ(n, n)
	JZ(LabelRef(l.L(end)))
	t := s.tailMask(n)
	v := s.vec()
	t.load(Mem{Base: p, Index: j, Scale: 4}, v)
	cmp(v, &t)
	each()
	JMP(LabelRef(l.L(end)))
}

func (s isa) index() {
	TEXT("index"+s.name, NOSPLIT, "func(x []float32, v float32) int")
	Doc("index" + s.name + " returns the first j with x_j == v, or -1.")
	l := labels("index" + s.name)
	p, n := slice("x")
	vv := s.bcast(Load(Param("v"), XMM()))
	j, bits := GP64(), GP64()
	s.scanMask(l, p, n, j, 0, vv, bits, func() { // EQ_OQ
		TESTQ(bits, bits)
		JNZ(LabelRef(l.L("found")))
	}, "none")
	Label(l.L("none"))
	VZEROUPPER()
	MOVQ(I64(-1), j)
	Store(j, ReturnIndex(0))
	RET()
	Label(l.L("found"))
	VZEROUPPER()
	BSFQ(bits, bits)
	ADDQ(bits, j)
	Store(j, ReturnIndex(0))
	RET()
}

// countAbove: how many x_j > v, by an ordered compare (a NaN on either
// side is not above), the mask's bits counted a vector at a time.
func (s isa) countAbove() {
	TEXT("countAbove"+s.name, NOSPLIT, "func(x []float32, v float32) int")
	Doc("countAbove" + s.name + " returns how many x_j > v (ordered: a NaN is never above, nor is anything above a NaN v).")
	l := labels("countAbove" + s.name)
	p, n := slice("x")
	vv := s.bcast(Load(Param("v"), XMM()))
	j, c, bits := GP64(), GP64(), GP64()
	XORQ(c, c)
	s.scanMask(l, p, n, j, 0x1e, vv, bits, func() { // GT_OQ
		POPCNTQ(bits, bits)
		ADDQ(bits, c)
	}, "done")
	Label(l.L("done"))
	VZEROUPPER()
	Store(c, ReturnIndex(0))
	RET()
}

// ---- dot ----

// dot: Σ_j w_j·(x_j - r) (w empty: all 1), in float32 lanes over each
// block and float64 lanes across, as expSum sums. A term past the float32
// range makes the sum ±Inf or NaN (the caller then sums in float64).
func (s isa) dot() {
	TEXT("dot"+s.name, NOSPLIT, "func(x, w []float32, r float32) float64")
	Doc("dot"+s.name+" returns Σ_j w_j·(x_j - r) (len(w) == 0: all 1) in float32 lanes over each Block and float64 lanes across;",
		"a term past the float32 range makes it ±Inf or NaN.")
	l := labels("dot" + s.name)
	p, n := slice("x")
	pw, wn := slice("w")
	rv := s.bcast(Load(Param("r"), XMM()))
	acc := [2]reg.VecVirtual{s.zeroVec(), s.zeroVec()}
	weightedVariants(l, p, pw, wn, func(weighted bool, lv labels, ptrs []reg.GPVirtual) {
		term := func(off int, a reg.VecVirtual) {
			v := s.vec()
			VMOVUPS(Mem{Base: p, Disp: off}, v)
			VSUBPS(rv, v, v)
			if weighted {
				VFMADD231PS(Mem{Base: pw, Disp: off}, v, a)
			} else {
				VADDPS(v, a, a)
			}
		}
		Label(lv.L("blocks"))
		CMPQ(n, U32(block))
		JL(LabelRef(lv.L("blocks_end")))
		{
			var a [4]reg.VecVirtual
			for i := range a {
				a[i] = s.zeroVec()
			}
			c := GP64()
			MOVQ(U32(block/(4*s.lanes)), c)
			Label(lv.L("inner"))
			for i := range a {
				term(i*s.bytes(), a[i])
			}
			for _, q := range ptrs {
				ADDQ(U32(4*s.bytes()), q)
			}
			DECQ(c)
			JNZ(LabelRef(lv.L("inner")))
			VADDPS(a[1], a[0], a[0])
			VADDPS(a[3], a[2], a[2])
			VADDPS(a[2], a[0], a[0])
			s.widen(a[0], acc)
			SUBQ(U32(block), n)
			JMP(LabelRef(lv.L("blocks")))
		}
		Label(lv.L("blocks_end"))
		a := s.zeroVec()
		loop(lv, "x1", n, s.lanes, ptrs, func() { term(0, a) })
		s.ifTail(lv, n, func(t tail) {
			v := s.vec()
			t.load(Mem{Base: p}, v)
			VSUBPS(rv, v, v)
			t.zero(v)
			if weighted {
				u := s.vec()
				t.load(Mem{Base: pw}, u)
				VFMADD231PS(u, v, a)
			} else {
				VADDPS(v, a, a)
			}
		})
		s.widen(a, acc)
	})
	x := s.sum64(acc)
	VZEROUPPER()
	Store(x, ReturnIndex(0))
	RET()
}

// weightedVariants emits body twice, without and with class weights: the
// first tests w's length (wn) and jumps to the second, so that neither
// loop tests it; ptrs are the pointers a step advances (x, and w with
// weights). Both end at the label "done".
func weightedVariants(l labels, p, pw, wn reg.GPVirtual, body func(weighted bool, lv labels, ptrs []reg.GPVirtual)) {
	for _, weighted := range []bool{false, true} {
		lv := labels(fmt.Sprintf("%s_w%v", l, weighted))
		if !weighted {
			TESTQ(wn, wn)
			JNZ(LabelRef(l.L("start")))
		} else {
			Label(l.L("start"))
		}
		ptrs := []reg.GPVirtual{p}
		if weighted {
			ptrs = append(ptrs, pw)
		}
		body(weighted, lv, ptrs)
		JMP(LabelRef(l.L("done")))
	}
	Label(l.L("done"))
}

// ---- axpy ----

func (s isa) axpy() {
	TEXT("axpy"+s.name, NOSPLIT, "func(dst, w []float32, a, b float32)")
	Doc("axpy" + s.name + " sets dst_j = a·dst_j - b·w_j (len(w) == 0: all 1), rounding the products (no FMA), as the portable loop.")
	l := labels("axpy" + s.name)
	p, n := slice("dst")
	pw, wn := slice("w")
	av := s.bcast(Load(Param("a"), XMM()))
	bv := s.bcast(Load(Param("b"), XMM()))
	weightedVariants(l, p, pw, wn, func(weighted bool, lv labels, ptrs []reg.GPVirtual) {
		one := func(v reg.VecVirtual, wm func(reg.VecVirtual)) {
			VMULPS(av, v, v)
			if weighted {
				u := s.vec()
				wm(u)
				VMULPS(bv, u, u)
				VSUBPS(u, v, v)
			} else {
				VSUBPS(bv, v, v)
			}
		}
		loop(lv, "x1", n, s.lanes, ptrs, func() {
			v := s.vec()
			VMOVUPS(Mem{Base: p}, v)
			one(v, func(u reg.VecVirtual) { VMOVUPS(Mem{Base: pw}, u) })
			VMOVUPS(v, Mem{Base: p})
		})
		s.ifTail(lv, n, func(t tail) {
			v := s.vec()
			t.load(Mem{Base: p}, v)
			one(v, func(u reg.VecVirtual) { t.load(Mem{Base: pw}, u) })
			t.store(v, Mem{Base: p})
		})
	})
	VZEROUPPER()
	RET()
}

// ---- soft cap ----

// capTo: dst_j = c·tanh(x_j·inv). Below |y| = 0.3 the odd Taylor series
// to y¹¹, above it (1 - e)/(1 + e) with e = exp(-2|y|) (the exp above),
// the sign put back; a vector whose lanes all take one branch computes
// that one alone. NaN stays NaN; ±Inf become ±c.
// tanhK are the soft cap's constants beside the exp's.
type tanhK struct {
	abs, sign, small, m2 Op
	t3, t5, t7, t9, t11  Mem
}

func (s isa) tanhConsts() tanhK {
	return tanhK{
		abs:   s.konst(vconst("abs", 0x7fffffff)),
		sign:  s.konst(vconst("sign", 0x80000000)),
		small: s.konst(fconst("small", 0.3)),
		m2:    s.konst(fconst("m2", -2)),
		t3:    fconst("t3", -1.0/3), t5: fconst("t5", 2.0/15), t7: fconst("t7", -17.0/315),
		t9: fconst("t9", 62.0/2835), t11: fconst("t11", -1382.0/155925),
	}
}

var capLabel int

// softcap returns z = c·tanh(v·inv) and t = tanh(v·inv) (v is clobbered;
// the gradient's factor is 1 - t², whatever c·inv is: with a temperature
// c is the cap over τ). Below |y| = 0.3 the odd Taylor series to y¹¹,
// above it (1 - e)/(1 + e) with e = exp(-2|y|) (the exp above), the sign
// put back; a vector whose lanes all take one branch computes that one
// alone. NaN stays NaN; ±Inf become ±c.
func (s isa) softcap(v, cv, iv reg.VecVirtual, k expK, tk tanhK, l labels) (z, t reg.VecVirtual) {
	capLabel++
	lv := labels(fmt.Sprintf("%s_cap%d", l, capLabel))
	y := v
	VMULPS(iv, y, y)
	a := s.vec()
	VANDPS(tk.abs, y, a)
	th := s.vec()
	// small lanes: mask in msk (AVX2) or ks (AVX-512); bits in g.
	g := GP32()
	var msk reg.VecVirtual
	var ks reg.Register
	if s.avx512 {
		ks = K()
		VCMPPS(Imm(1), tk.small, a, ks) // LT_OS: a < 0.3
		KMOVW(ks, g)
	} else {
		msk = YMM()
		VCMPPS(Imm(1), tk.small, a, msk)
		VMOVMSKPS(msk, g)
	}
	full := uint32(1)<<s.lanes - 1
	TESTL(g, g)
	JZ(LabelRef(lv.L("nosmall")))
	{
		y2 := s.vec()
		VMULPS(y, y, y2)
		VMOVUPS(tk.t11, th)
		VFMADD213PS(tk.t9, y2, th)
		VFMADD213PS(tk.t7, y2, th)
		VFMADD213PS(tk.t5, y2, th)
		VFMADD213PS(tk.t3, y2, th)
		VFMADD213PS(k.one, y2, th)
		VMULPS(y, th, th)
	}
	Label(lv.L("nosmall"))
	CMPL(g, U32(full))
	JE(LabelRef(lv.L("merged")))
	{
		d := a
		VMULPS(tk.m2, d, d)
		e := s.exp(d, k)
		num, den := s.vec(), s.vec()
		VMOVUPS(k.one, num)
		VSUBPS(e, num, num)
		VMOVUPS(k.one, den)
		VADDPS(e, den, den)
		VDIVPS(den, num, num)
		sb := s.vec()
		VANDPS(tk.sign, y, sb)
		VORPS(sb, num, num)
		if s.avx512 {
			KNOTW(ks, ks)
			VMOVAPS(num, ks, th) // th = small ? th : big
		} else {
			VBLENDVPS(msk, th, num, th) // small ? th : num
		}
	}
	Label(lv.L("merged"))
	// NaN stays NaN (the exp's max keeps it, but the series' branch may
	// not have run).
	if s.avx512 {
		kn := K()
		VCMPPS(Imm(3), y, y, kn)
		VMOVAPS(y, kn, th)
	} else {
		un := YMM()
		VCMPPS(Imm(3), y, y, un)
		VBLENDVPS(un, y, th, th)
	}
	z = s.vec()
	VMULPS(cv, th, z)
	return z, th
}

// capTo: dst_j = c·tanh(x_j·inv) (softcap).
func (s isa) capTo() {
	TEXT("capTo"+s.name, NOSPLIT, "func(dst, x []float32, c, inv float32)")
	Doc("capTo" + s.name + " sets dst_j = c·tanh(x_j·inv) (len(dst) ≥ len(x)), within 3e-7 relative; NaN stays NaN, ±Inf become ±c.")
	l := labels("cap" + s.name)
	dp, _ := slice("dst")
	p, n := slice("x")
	cv := s.bcast(Load(Param("c"), XMM()))
	iv := s.bcast(Load(Param("inv"), XMM()))
	k := s.expConsts(s.zeroVec().AsX())
	tk := s.tanhConsts()
	loop(l, "x1", n, s.lanes, []reg.GPVirtual{p, dp}, func() {
		v := s.vec()
		VMOVUPS(Mem{Base: p}, v)
		z, _ := s.softcap(v, cv, iv, k, tk, l)
		VMOVUPS(z, Mem{Base: dp})
	})
	s.ifTail(l, n, func(t tail) {
		v := s.vec()
		t.load(Mem{Base: p}, v)
		z, _ := s.softcap(v, cv, iv, k, tk, l)
		t.store(z, Mem{Base: dp})
	})
	VZEROUPPER()
	RET()
}

// grad: the gradient pass with options, dst_j = (a·exp(z_j - shift) -
// b·w_j)·(1 - t_j²) with t = tanh(x·inv), z = c·t when capped, else z = x
// and no factor (w empty: all 1). Each product and difference is rounded
// as in the portable loop (no FMA outside the exp and tanh).
func (s isa) grad() {
	TEXT("grad"+s.name, NOSPLIT, "func(dst, x, w []float32, shift, a, b, c, inv float32, capped bool)")
	Doc("grad"+s.name+" sets dst_j = (a·exp(z_j - shift) - b·w_j)·(1 - t_j²), t_j = tanh(x_j·inv) and z_j = c·t_j when capped",
		"(else z = x and no factor; len(w) == 0: all 1). dst may be x.")
	l := labels("grad" + s.name)
	dp, _ := slice("dst")
	p, n := slice("x")
	pw, wn := slice("w")
	sv := s.bcast(Load(Param("shift"), XMM()))
	av := s.bcast(Load(Param("a"), XMM()))
	bv := s.bcast(Load(Param("b"), XMM()))
	cv := s.bcast(Load(Param("c"), XMM()))
	iv := s.bcast(Load(Param("inv"), XMM()))
	capped := GP8()
	Load(Param("capped"), capped)
	k := s.expConsts(sv.AsX())
	tk := s.tanhConsts()
	for _, cp := range []bool{false, true} {
		for _, weighted := range []bool{false, true} {
			lv := labels(fmt.Sprintf("%s_c%v_w%v", l, cp, weighted))
			Label(lv.L("start"))
			// Dispatch: the first variant tests and jumps to the others.
			if !cp && !weighted {
				TESTB(capped, capped)
				JZ(LabelRef(lv.L("nocap")))
				TESTQ(wn, wn)
				JNZ(LabelRef(labels(fmt.Sprintf("%s_c%v_w%v", l, true, true)).L("start")))
				JMP(LabelRef(labels(fmt.Sprintf("%s_c%v_w%v", l, true, false)).L("start")))
				Label(lv.L("nocap"))
				TESTQ(wn, wn)
				JNZ(LabelRef(labels(fmt.Sprintf("%s_c%v_w%v", l, false, true)).L("start")))
			}
			ptrs := []reg.GPVirtual{p, dp}
			if weighted {
				ptrs = append(ptrs, pw)
			}
			one := func(v reg.VecVirtual, wload func(reg.VecVirtual)) reg.VecVirtual {
				z := v
				var r reg.VecVirtual
				if cp {
					z, r = s.softcap(v, cv, iv, k, tk, lv)
				}
				VSUBPS(sv, z, z)
				e := s.exp(z, k)
				VMULPS(av, e, e)
				if weighted {
					u := s.vec()
					wload(u)
					VMULPS(bv, u, u)
					VSUBPS(u, e, e)
				} else {
					VSUBPS(bv, e, e)
				}
				if cp {
					VMULPS(r, r, r)
					f := s.vec()
					VMOVUPS(k.one, f)
					VSUBPS(r, f, f)
					VMULPS(f, e, e)
				}
				return e
			}
			loop(lv, "x1", n, s.lanes, ptrs, func() {
				v := s.vec()
				VMOVUPS(Mem{Base: p}, v)
				VMOVUPS(one(v, func(u reg.VecVirtual) { VMOVUPS(Mem{Base: pw}, u) }), Mem{Base: dp})
			})
			s.ifTail(lv, n, func(t tail) {
				v := s.vec()
				t.load(Mem{Base: p}, v)
				t.store(one(v, func(u reg.VecVirtual) { t.load(Mem{Base: pw}, u) }), Mem{Base: dp})
			})
			JMP(LabelRef(l.L("done")))
		}
	}
	Label(l.L("done"))
	VZEROUPPER()
	RET()
}

// ---- half precision ----

// The conversions take whole vectors only: n - n mod lanes elements (the
// Go side converts the rest with the portable loop). Each step converts
// four vectors, then one at a time.

// halfLoop emits the conversion loop over n elements, with src and dst
// advancing by their element sizes (sb and db bytes): body converts the
// vector at element offset i of a step.
func (s isa) halfLoop(l labels, n, src, dst reg.GPVirtual, sb, db int, body func(i int)) {
	for _, unroll := range []int{4, 1} {
		step := unroll * s.lanes
		name := fmt.Sprintf("x%d", unroll)
		Label(l.L(name))
		CMPQ(n, U32(step))
		JL(LabelRef(l.L(name + "_end")))
		for i := range unroll {
			body(i)
		}
		ADDQ(U32(sb*step), src)
		ADDQ(U32(db*step), dst)
		SUBQ(U32(step), n)
		JMP(LabelRef(l.L(name)))
		Label(l.L(name + "_end"))
	}
	VZEROUPPER()
	RET()
}

// halfMem is the memory operand of vector i of a step of 16-bit
// elements: half a vector's bytes.
func (s isa) halfMem(p reg.GPVirtual, i int) Mem { return Mem{Base: p, Disp: i * 2 * s.lanes} }

// halfText starts the conversion kernel prefix + BF16 or F16 + the
// instruction set's name, of signature sig, documented by doc (its %s the
// element type), and returns its labels, dst and src and src's length.
func (s isa) halfText(prefix string, bf bool, sig, doc string) (l labels, dst, src, n reg.GPVirtual) {
	typ := "F16"
	if bf {
		typ = "BF16"
	}
	name := prefix + typ + s.name
	TEXT(name, NOSPLIT, sig)
	Doc(name+fmt.Sprintf(doc, typ), "down to a whole vector; len(dst) ≥ len(src).")
	dst, _ = slice("dst")
	src, n = slice("src")
	return labels(name), dst, src, n
}

// fromHalf: dst_j = src_j as float32, for bfloat16 (a shift of the
// zero-extended 16 bits into the upper half) or float16 (VCVTPH2PS: F16C
// on AVX2, AVX-512F on AVX-512).
func (s isa) fromHalf(bf bool) {
	l, dst, src, n := s.halfText("from", bf, "func(dst []float32, src []uint16)",
		" sets dst_j to the %s src_j as a float32 (exact), for j below len(src) rounded")
	s.halfLoop(l, n, src, dst, 2, 4, func(i int) {
		v := s.vec()
		if bf {
			VPMOVZXWD(s.halfMem(src, i), v)
			VPSLLD(U8(16), v, v)
		} else {
			VCVTPH2PS(s.halfMem(src, i), v)
		}
		VMOVUPS(v, Mem{Base: dst, Disp: i * s.bytes()})
	})
}

// toHalf: dst_j = c·src_j rounded to the nearest (ties to even), the
// product in float32 (c = 1: a plain narrowing). float16:
// VCVTPS2PH with rounding 0 (nearest even), which gives ±Inf past 65504,
// subnormals, and a quiet NaN for a NaN. bfloat16: in the integers, as
// the portable code, u + 0x7fff + (u>>16 & 1), upper half (a carry rounds
// to the next value, to Inf past the largest); a NaN (|u| > 0x7f800000)
// gets its quiet bit instead, so that no carry makes it Inf.
func (s isa) toHalf(bf bool) {
	l, dst, src, n := s.halfText("to", bf, "func(dst []uint16, src []float32, c float32)",
		" sets dst_j to c·src_j (a float32 product) rounded to %s (to the nearest, ties to even), for j below len(src) rounded")
	cv := s.bcast(Load(Param("c"), XMM()))
	var one, bias, abs, inf, quiet Op
	if bf {
		one, bias = s.konst(vconst("one_i", 1)), s.konst(vconst("bias7fff", 0x7fff))
		abs, inf, quiet = s.konst(vconst("absmask", 0x7fffffff)), s.konst(vconst("inf_i", 0x7f800000)), s.konst(vconst("quiet", 0x00400000))
	}
	s.halfLoop(l, n, src, dst, 4, 2, func(i int) {
		v := s.vec()
		VMULPS(Mem{Base: src, Disp: i * s.bytes()}, cv, v)
		if !bf {
			VCVTPS2PH(U8(0), v, s.halfMem(dst, i))
			return
		}
		t, r, a, q := s.vec(), s.vec(), s.vec(), s.vec()
		VPSRLD(U8(16), v, t)
		if s.avx512 {
			VPANDD(one, t, t)
			VPADDD(bias, v, r)
			VPADDD(t, r, r)
			VPANDD(abs, v, a)
			VPORD(quiet, v, q)
			k := K()
			VPCMPD(U8(6), inf, a, k) // a > 0x7f800000 (signed, both non-negative): NaN
			VPBLENDMD(q, r, k, r)
			VPSRLD(U8(16), r, r)
			VPMOVDW(r, s.halfMem(dst, i))
			return
		}
		VPAND(one, t, t)
		VPADDD(bias, v, r)
		VPADDD(t, r, r)
		VPAND(abs, v, a)
		VPOR(quiet, v, q)
		VPCMPGTD(inf, a, a) // NaN lanes
		VBLENDVPS(a, q, r, r)
		VPSRLD(U8(16), r, r)
		VPACKUSDW(r, r, r)     // words 0-3 twice, then 4-7 twice (per 128-bit lane)
		VPERMQ(U8(0x08), r, r) // qwords 0, 2: words 0-7 in the low half
		VMOVDQU(r.AsX(), s.halfMem(dst, i))
	})
}

func main() {
	arm64Out := flag.String("arm64", "", "write the arm64 (NEON) kernels to this file instead of the amd64 ones")
	arm64Stubs := flag.String("arm64stubs", "", "with -arm64: write their declarations to this file")
	probes := flag.Bool("probes", false, "write the benchmarks' probes (the read loop and the FMA peak; package bench/internal/probe) instead of the kernels")
	flag.Parse()
	if *arm64Out != "" {
		gen := genARM64
		if *probes {
			gen = genARM64Probes
		}
		if err := gen(*arm64Out, *arm64Stubs); err != nil {
			fmt.Fprintln(os.Stderr, "asmgen:", err)
			os.Exit(1)
		}
		return
	}
	ConstraintExpr("!purego")
	if *probes {
		for _, s := range []isa{avx2, avx512} {
			s.sum()
			s.fma()
		}
		Generate()
		checkAVX2Registers()
		return
	}
	for _, s := range []isa{avx2, avx512} {
		s.maxNaN()
		s.expSum(false)
		s.expSum(true)
		s.expSumMaxHalf("BF16")
		s.expSumMaxHalf("F16")
		s.scale()
		s.index()
		s.countAbove()
		s.dot()
		s.axpy()
		s.capTo()
		s.grad()
		s.fromHalf(true)
		s.fromHalf(false)
		s.toHalf(true)
		s.toHalf(false)
	}
	Generate()
	checkAVX2Registers()
}

// checkAVX2Registers fails when an AVX2 kernel uses X16–X31 or Y16–Y31,
// which only EVEX (AVX-512) can encode: the register allocator takes them
// under pressure, and the kernel would fault on a CPU without AVX-512.
func checkAVX2Registers() {
	out := flag.Lookup("out").Value.String()
	b, err := os.ReadFile(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "asmgen:", err)
		os.Exit(1)
	}
	high := regexp.MustCompile(`\b[XY](1[6-9]|2[0-9]|3[01])\b|\bZ[0-9]+\b|\bK[0-7]\b`)
	fn := ""
	for i, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("TEXT ")) {
			fn = string(line)
		}
		if bytes.Contains([]byte(fn), []byte("AVX2(")) && high.Match(line) {
			fmt.Fprintf(os.Stderr, "asmgen: %s:%d: an AVX2 kernel uses an AVX-512 register: %s\n", out, i+1, line)
			os.Exit(1)
		}
	}
}
