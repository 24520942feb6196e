/*
 * elem.cl: the element type of the row kernels that follow (rows.cl),
 * chosen by ELEM_ID, which the host sets before each copy: 0 float, 1
 * bfloat16 (ushort: a float's upper half, widened by a shift, stored
 * rounded to the nearest, ties to even, by bf16_of), 2 float16 (half,
 * through vload_half and vstore_half_rte, which OpenCL C has without the
 * cl_khr_fp16 extension: no half arithmetic is done). Loads are from
 * element-aligned addresses (vload4 and vload_half4, not vloada); LDA4
 * and STA4 load and store four from an address aligned to four elements
 * (one wide access: a float4, a ushort4, vloada_half4) where ALIGN asks
 * for it for the type (ALIGNED; HEAD is then the scalar columns before the
 * first aligned one), else they are LD4 and ST4 (HEAD 0). UNR
 * is the loads in flight per work-item: UNROLL for float, UNROLL_HALF
 * for the half types (each load half the bytes).
 */
#undef ELEM
#undef TYPED
#undef LD
#undef LD4
#undef ST
#undef ST4
#undef LDA4
#undef STA4
#undef ALIGNED
#undef UNR
#if ELEM_ID == 0
#define UNR UNROLL
#define ELEM float
#define TYPED(n) n##_f32
#define LD(j, p) ((p)[j])
#define LD4(k, p) vload4(k, p)
#define ST(v, j, p) ((p)[j] = (v))
#define ST4(v, k, p) vstore4(v, k, p)
#define ALIGNED (ALIGN & 1)
#if ALIGNED
#define LDA4(k, p) (((__global const float4 *)(p))[k])
#define STA4(v, k, p) (((__global float4 *)(p))[k] = (v))
#endif
#elif ELEM_ID == 1
#define UNR UNROLL_HALF
#define ELEM ushort
#define TYPED(n) n##_bf16
#define LD(j, p) as_float((uint)(p)[j] << 16)
#define LD4(k, p) as_float4(convert_uint4(vload4(k, p)) << 16)
#define ST(v, j, p) ((p)[j] = bf16_of(v))
#define ST4(v, k, p) vstore4(bf16_of4(v), k, p)
#define ALIGNED (ALIGN & 2)
#if ALIGNED
#define LDA4(k, p) as_float4(convert_uint4(((__global const ushort4 *)(p))[k]) << 16)
#define STA4(v, k, p) (((__global ushort4 *)(p))[k] = bf16_of4(v))
#endif
#elif ELEM_ID == 2
#define UNR UNROLL_HALF
#define ELEM half
#define TYPED(n) n##_f16
#define LD(j, p) vload_half(j, p)
#define LD4(k, p) vload_half4(k, p)
#define ST(v, j, p) vstore_half_rte(v, j, p)
#define ST4(v, k, p) vstore_half4_rte(v, k, p)
#define ALIGNED (ALIGN & 2)
#if ALIGNED
#define LDA4(k, p) vloada_half4(k, p)
#define STA4(v, k, p) vstorea_half4_rte(v, k, p)
#endif
#else
#error "ELEM_ID is 0 (float), 1 (bfloat16) or 2 (float16)"
#endif
#if !ALIGNED /* the rows' bodies from the first column, element-aligned (HEAD 0) */
#define LDA4 LD4
#define STA4 ST4
#endif
#undef HEAD
#define HEAD(off, cols) (ALIGNED ? head_of(off, cols) : 0)
