/* lmlab.infer.native: one small-batch decode step of a Llama-family model, in C.
 *
 * Why: batch-1 decoding reads every weight once per token, so its speed limit is the memory
 * bandwidth. torch's matrix-vector kernels read SmolLM2-135M's narrow (576-column) weights at
 * about half the speed a plain sum reads memory on the 2-core CPUs here (AVX2 and AVX-512); a
 * dot product that walks one weight row at a time with four independent vector accumulators
 * reads at about the speed of the plain sum (measured, benchmarks/RESULTS.md, Inference).
 * This file is that product and the rest of a decode step around it, so that one call runs a
 * whole token through the model (lm_step), or greedy decoding for many tokens (lm_greedy); and
 * blocked products for steps of several inputs (speculative checks, small batches), which are
 * bound by arithmetic as much as by memory.
 *
 * The arithmetic is LlamaStep.step's (lmlab/infer/fastpath.py) over the model's own fp32
 * weights, in the same order: RMSNorm, q/k/v projections, RoPE, the new keys and values
 * written into the caller's cache buffers, attention with the padding mask and causal order,
 * output projection and residual, RMSNorm, SiLU-gated MLP and residual, final RMSNorm, LM head.
 * Results equal the torch step up to fp32 rounding (sums in another order), not bit for bit.
 * A draft model for speculative decoding may instead pass bfloat16 copies of its projections
 * and head (half the bytes per token; a draft's precision only moves its acceptance rate, never
 * the output, which the target checks). A model decoded with rounded weights (decode_weights
 * bf16 or int8, lmlab/infer/precision.py) passes bfloat16 copies, or int8 rows in llama.cpp's
 * q8_0 layout (blocks of 32 weights with one fp16 scale each; the inputs are rounded to int8 per
 * block too, and the products are integer dot products, matvec_q8); the torch step then runs
 * the same rounded weights and inputs in fp32, so the two agree up to fp32 rounding. Everything is plain C vectors compiled for the machine (-march=native): the same
 * source runs on AVX2-only and AVX-512 CPUs (the cache name hashes the CPU's flags).
 *
 * Layouts (all contiguous, row-major): a projection weight is [out, in]; the key/value buffers
 * of a layer are (B, Hkv, T, Dh); tokens and positions are (B, L); M = B * L inputs.
 *
 * Built on first use by lmlab/infer/native.py (gcc -O3 -march=native, OpenMP when available)
 * and called through ctypes; threads: OpenMP over weight rows, `nt` of them.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LM_X86 1
#endif

typedef float v8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

/* Phase timing (the decode step's time by phase, benchmarks/profile_decode_phases.py): built
 * only with -DLM_PROF (native.py adds it under LMLAB_NATIVE_PROF=1, a separate cached library);
 * without it every PROF_ macro is empty and SYNC is the plain barrier. Each thread adds the
 * wall time since its last mark to its phase's sum (CLOCK_MONOTONIC); the time a thread waits
 * at a barrier goes to P_WAIT; thread 0 counts the barriers and parallel regions. */
enum { P_EMBED, P_NORM, P_QKV, P_ROPE, P_ATT, P_MERGE, P_O, P_GU, P_SILU, P_DOWN, P_FNORM,
       P_HEAD, P_ARGMAX, P_WAIT, P_N };
enum { PROF_THREADS = 64 };
#ifdef LM_PROF
static double prof_acc[PROF_THREADS][P_N], prof_tok[PROF_THREADS][P_N];
static double prof_min[PROF_THREADS][P_N];  /* the least of any step that ran it (0: none) */
static int64_t prof_count[3];  /* barriers, parallel regions (thread 0's), steps */
static _Thread_local double prof_last;

static inline double prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int prof_tid(void)
{
#ifdef _OPENMP
    int t = omp_get_thread_num();
    return t < PROF_THREADS ? t : PROF_THREADS - 1;
#else
    return 0;
#endif
}

#define PROF_BEGIN() (prof_last = prof_now())
#define PROF_MARK(p)                                                                           \
    do {                                                                                       \
        double t_ = prof_now();                                                                \
        prof_tok[prof_tid()][p] += t_ - prof_last;                                             \
        prof_last = t_;                                                                        \
    } while (0)
#define PROF_REGION() (prof_tid() == 0 ? (void)prof_count[1]++ : (void)0)
#define SYNC(p)                                                                                \
    do {                                                                                       \
        PROF_MARK(p);                                                                          \
        _Pragma("omp barrier");                                                                \
        PROF_MARK(P_WAIT);                                                                     \
        if (prof_tid() == 0)                                                                   \
            prof_count[0]++;                                                                   \
    } while (0)

/* the end of a step (thread 0, outside the parallel regions): each thread's times of this
 * step added to the sums and kept where they are the least yet (a step's phase that no other
 * process preempted: the least over steps on a shared machine) */
static void prof_step(void)
{
    for (int t = 0; t < PROF_THREADS; t++)
        for (int p = 0; p < P_N; p++) {
            double v = prof_tok[t][p];
            prof_acc[t][p] += v;
            if (v > 0.0 && (prof_min[t][p] == 0.0 || v < prof_min[t][p]))
                prof_min[t][p] = v;
            prof_tok[t][p] = 0.0;
        }
    prof_count[2]++;
}

/* the sums so far into out and the least per step into least (PROF_THREADS x P_N seconds),
 * counts: barriers, regions, steps; then zero them all when reset */
int lm_prof(double *out, double *least, int64_t *counts, int reset)
{
    memcpy(out, prof_acc, sizeof prof_acc);
    memcpy(least, prof_min, sizeof prof_min);
    memcpy(counts, prof_count, sizeof prof_count);
    if (reset) {
        memset(prof_acc, 0, sizeof prof_acc);
        memset(prof_min, 0, sizeof prof_min);
        memset(prof_tok, 0, sizeof prof_tok);
        memset(prof_count, 0, sizeof prof_count);
    }
    return P_N;
}
#define PROF_STEP() prof_step()
#else
#define PROF_BEGIN() ((void)0)
#define PROF_MARK(p) ((void)0)
#define PROF_REGION() ((void)0)
#define PROF_STEP() ((void)0)
#define SYNC(p) do { _Pragma("omp barrier") } while (0)
#endif

/* the weight types of the projections and the head (lm_model.wtype) */
enum { W_F32 = 0, W_BF16 = 1, W_I8 = 2 };
enum { QB = 32 };  /* int8: columns per block (one scale each) */

typedef struct {
    int D, H, Hkv, Dh, I, V, n_layers;
    float eps, scale, rope_scale;
    const float *inv_freq;  /* Dh / 2 */
    const float *embed;     /* V x D (fp32 always: one row is read per token) */
    const float *norm;      /* D */
    /* the head: Vh rows, then Vx more rows (NULL / 0: none), logits in that order; the full
     * head is head = the LM head (or the tied embedding), Vh = V, Vx = 0; a draft scoring part
     * of the vocabulary passes the first Vh rows of it and a copy of the others it keeps */
    const void *head;
    int Vh;
    const void *head_x;
    int Vx;
    /* projections and head: W_F32, W_BF16 (uint16), or W_I8: each matrix (R rows of K) one
     * block of R x NB fp16 scales (NB = ceil(K / 32): a scale per 32 columns of a row), then
     * its R x K weights q as bytes q ^ 0x80 (q + 128: VNNI's unsigned operand) */
    int wtype;
    const void *const *layer;  /* n_layers x 9: ln1, q, k, v, o, ln2, gate, up, down */
    int att_chunk;  /* keys per attention chunk (see ATT_CHUNK_MIN) */
    int isa;  /* the int8 kernel asked for: ISA_AUTO (the best this CPU has), or a lower one */
    int amx;  /* 1: bf16 products of 5+ inputs on AMX tiles where the CPU and Linux allow */
} lm_model;

enum { LN1, WQ, WK, WV, WO, LN2, WG, WU, WD, N_PER_LAYER };

static inline v8 load8(const float *p)
{
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float hsum8(v8 v)
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* the four sums hsum8(a), hsum8(b), hsum8(c), hsum8(d) into out[0..3], with three horizontal
 * adds instead of four separate reductions (a several-input step is bound by its arithmetic) */
static inline void hsum8x4(v8 a, v8 b, v8 c, v8 d, float *out)
{
#ifdef __AVX__
    __m256 t0 = _mm256_hadd_ps((__m256)a, (__m256)b), t1 = _mm256_hadd_ps((__m256)c, (__m256)d);
    __m256 t2 = _mm256_hadd_ps(t0, t1);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1)));
#else
    out[0] = hsum8(a);
    out[1] = hsum8(b);
    out[2] = hsum8(c);
    out[3] = hsum8(d);
#endif
}

/* exp of eight floats: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 minimax polynomial
 * (Cephes expf's coefficients), times 2^n from the exponent bits; inputs clamped to where
 * 2^n is a normal float (exp(-87.34) ~ 1e-38 for anything below). Within 2 ulp of libm's
 * expf; it replaces 8 scalar calls (softmax and SiLU had spent ~0.4 ms of a 10 ms step in
 * expf, measured 2026-12-05). */
static inline v8 exp8(v8 x)
{
#ifdef __AVX__
    /* max(lo, x), then min(hi, .): each returns its second operand when one is NaN, so a NaN
     * goes through as the element loop below lets it (GCC 12 compiles that loop lane by lane) */
    x = (v8)_mm256_min_ps(_mm256_set1_ps(88.3762626647949f),
                          _mm256_max_ps(_mm256_set1_ps(-87.3365447504019f), (__m256)x));
#else
    for (int i = 0; i < 8; i++) {
        x[i] = x[i] > 88.3762626647949f ? 88.3762626647949f : x[i];
        x[i] = x[i] < -87.3365447504019f ? -87.3365447504019f : x[i];
    }
#endif
    const float magic = 12582912.0f;  /* 1.5 * 2^23: adding it rounds to an integer */
    v8 n = (x * 1.44269504088896341f + magic) - magic;
    v8 r = x - n * 0.693359375f;  /* ln 2 in two parts */
    r = r - n * -2.12194440e-4f;
    v8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v8 y = p * (r * r) + r + 1.0f;
    i32x8 e = (__builtin_convertvector(n, i32x8) + 127) << 23;
    v8 scale;
    memcpy(&scale, &e, sizeof scale);
    return y * scale;
}

/* exp8 of n <= 8 floats at p, in place */
static inline void exp_tail(float *p, int n, float sub)
{
    v8 v = {0};
    for (int i = 0; i < n; i++)
        v[i] = p[i] - sub;
    v = exp8(v);
    for (int i = 0; i < n; i++)
        p[i] = v[i];
}

/* bytes of weights a one-input row product asks for ahead of its reads (prefetcht0, every
 * line): SmolLM2 fp32 batch-1 step, one thread, ms of CPU, A/B in one process under load (a
 * direction): none 36.5, 8 KB 35.3 (2026-12-07; bf16 with AVX-512: BF16_PF) */
#ifndef DOT1_PF
#define DOT1_PF 8192
#endif

/* w . x over K for one row of weights of type T read by LOAD (8 at a time) and AT (one): four
 * accumulators, a row at full read speed. One definition for fp32 (dot1) and bfloat16
 * (dot1_bf16) weights, each compiled with its own loads. */
#define DEFINE_DOT1(name, T, LOAD, AT)                                                         \
    static inline float name(const T *w, const float *x, int K)                                \
    {                                                                                          \
        v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                             \
        int k = 0;                                                                             \
        for (; k + 32 <= K; k += 32) {                                                         \
            __builtin_prefetch((const char *)(w + k) + DOT1_PF, 0, 3);                         \
            if (sizeof(T) * 32 > 64)                                                           \
                __builtin_prefetch((const char *)(w + k) + DOT1_PF + 64, 0, 3);                \
            a0 += LOAD(w + k) * load8(x + k);                                                  \
            a1 += LOAD(w + k + 8) * load8(x + k + 8);                                          \
            a2 += LOAD(w + k + 16) * load8(x + k + 16);                                        \
            a3 += LOAD(w + k + 24) * load8(x + k + 24);                                        \
        }                                                                                      \
        for (; k + 8 <= K; k += 8)                                                             \
            a0 += LOAD(w + k) * load8(x + k);                                                  \
        float s = hsum8((a0 + a1) + (a2 + a3));                                                \
        for (; k < K; k++)                                                                     \
            s += AT(w, k) * x[k];                                                              \
        return s;                                                                              \
    }

static inline float f32_at(const float *w, int k)
{
    return w[k];
}

DEFINE_DOT1(dot1, float, load8, f32_at)

/* y[j * ldy] (+)= w . x_j for the M inputs x_j = x + j * ldx, each K long. The 4-, 2- and
 * 1-input passes are written out on purpose: a shared loop over an accumulator array (even
 * always-inlined with a constant count) made GCC 12 spill the accumulators to the stack
 * (same results, 1-4 % slower at 3-6 inputs, measured 2026-12-04). */
static void row_dot(const float *w, const float *x, int ldx, int K, int M, float *y, int ldy,
                    int add, int pf)
{
    int j = 0;
    for (; j + 4 <= M; j += 4) {  /* four inputs per pass: eight accumulators */
        const float *x0 = x + (size_t)j * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            if (pf && j == 0)
                __builtin_prefetch(w + pf + k, 0, 2);
            v8 w0 = load8(w + k), w1 = load8(w + k + 8);
            a0 += w0 * load8(x0 + k);
            a1 += w1 * load8(x0 + k + 8);
            b0 += w0 * load8(x1 + k);
            b1 += w1 * load8(x1 + k + 8);
            c0 += w0 * load8(x2 + k);
            c1 += w1 * load8(x2 + k + 8);
            d0 += w0 * load8(x3 + k);
            d1 += w1 * load8(x3 + k + 8);
        }
        float s[4];
        hsum8x4(a0 + a1, b0 + b1, c0 + c1, d0 + d1, s);
        for (; k < K; k++) {
            s[0] += w[k] * x0[k];
            s[1] += w[k] * x1[k];
            s[2] += w[k] * x2[k];
            s[3] += w[k] * x3[k];
        }
        for (int i = 0; i < 4; i++) {
            float *yi = y + (size_t)(j + i) * ldy;
            *yi = add ? *yi + s[i] : s[i];
        }
    }
    for (; j + 2 <= M; j += 2) {  /* two inputs per pass over the row (the row stays in L1) */
        const float *x0 = x + (size_t)j * ldx, *x1 = x0 + ldx;
        v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            if (pf && j == 0)
                __builtin_prefetch(w + pf + k, 0, 2);
            v8 w0 = load8(w + k), w1 = load8(w + k + 8);
            a0 += w0 * load8(x0 + k);
            a1 += w1 * load8(x0 + k + 8);
            b0 += w0 * load8(x1 + k);
            b1 += w1 * load8(x1 + k + 8);
        }
        float s0 = hsum8(a0 + a1), s1 = hsum8(b0 + b1);
        for (; k < K; k++) {
            s0 += w[k] * x0[k];
            s1 += w[k] * x1[k];
        }
        y[(size_t)j * ldy] = add ? y[(size_t)j * ldy] + s0 : s0;
        y[(size_t)(j + 1) * ldy] = add ? y[(size_t)(j + 1) * ldy] + s1 : s1;
    }
    if (j < M) {  /* one input */
        float s = dot1(w, x + (size_t)j * ldx, K);
        y[(size_t)j * ldy] = add ? y[(size_t)j * ldy] + s : s;
    }
}

enum { BLOCK_NR = 2 };  /* the rows block_dot takes together (see block_rows) */

/* An empty asm that pins a vector in a register (GCC 12 would otherwise reload it for every
 * input). Its "v" constraint needs AVX registers: without AVX (-march=x86-64) it is a no-op. */
#if defined(__AVX__)
#define KEEP_IN_REG(x) __asm__("" : "+v"(x))
#else
#define KEEP_IN_REG(x) ((void)0)
#endif

/* BLOCK_NR adjacent rows (w, w + K, ...; out to y[0 .. BLOCK_NR-1] of each input's row of y)
 * against NI inputs in one pass: NI x BLOCK_NR accumulators, each weight and input vector loaded
 * once per 8 columns for all of them; the rows pf floats on asked for into L2 meanwhile. NI is
 * a constant at each call (block_dot_m's switch: the accumulators stay in registers). */
static inline __attribute__((always_inline)) void
block_dot(const float *w, int K, const float *x, int ldx, float *y, int ldy, int add,
          const int NI, int pf)
{
    v8 acc[12][BLOCK_NR];
#pragma GCC unroll 12
    for (int i = 0; i < NI; i++)
#pragma GCC unroll 4
        for (int r = 0; r < BLOCK_NR; r++)
            acc[i][r] = (v8){0};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        if (pf)  /* the rows are BLOCK_NR * 8 floats further on: every line of them */
#pragma GCC unroll 2
            for (int q = 0; q < BLOCK_NR * 8; q += 16)
                __builtin_prefetch(w + pf + BLOCK_NR * k + q, 0, 2);
        v8 wv[BLOCK_NR];
#pragma GCC unroll 4
        for (int r = 0; r < BLOCK_NR; r++) {
            wv[r] = load8(w + (size_t)r * K + k);
            /* (held in registers: GCC 12 would otherwise load it again for every input) */
            KEEP_IN_REG(wv[r]);
        }
#pragma GCC unroll 12
        for (int i = 0; i < NI; i++) {
            v8 v = load8(x + (size_t)i * ldx + k);
            KEEP_IN_REG(v);
#pragma GCC unroll 4
            for (int r = 0; r < BLOCK_NR; r++)
                acc[i][r] += wv[r] * v;
        }
    }
    /* the NI x BLOCK_NR horizontal sums four at a time (hsum8x4): one at a time they had cost
     * a tenth of the kernel's time (8-12 inputs on weights in L2, one thread: 6.3 -> 7.0 G
     * FMAs a second, of 7.3; whole steps of 8 / 11 / 16 inputs 0.97 / 0.92 / 0.97x the
     * time at the slow memory level, alternating builds, 2026-12-05) */
    const v8 *a = &acc[0][0];  /* sums[i * BLOCK_NR + r] of acc[i][r] */
    float sums[12 * BLOCK_NR];
#pragma GCC unroll 12
    for (int q = 0; q + 4 <= NI * BLOCK_NR; q += 4)
        hsum8x4(a[q], a[q + 1], a[q + 2], a[q + 3], sums + q);
#pragma GCC unroll 4
    for (int q = NI * BLOCK_NR / 4 * 4; q < NI * BLOCK_NR; q++)
        sums[q] = hsum8(a[q]);
#pragma GCC unroll 12
    for (int i = 0; i < NI; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *yi = y + (size_t)i * ldy;
#pragma GCC unroll 4
        for (int r = 0; r < BLOCK_NR; r++) {
            float s = sums[i * BLOCK_NR + r];
            const float *wr = w + (size_t)r * K;
            for (int kk = k; kk < K; kk++)
                s += wr[kk] * xi[kk];
            yi[r] = add ? yi[r] + s : s;
        }
    }
}

enum { BLOCK_MIN = 5 };  /* the fewest inputs block_dot takes */

/* The rows block_dot takes together for M inputs, 0: none (row_dot then takes the inputs
 * four at a time, faster for 2-4 inputs: 4-row blocks were 1.03-1.27x slower there, four short
 * streams, which the hardware prefetcher follows worse than one row after another). Two rows
 * from 5 inputs on (5-6 inputs had taken 4 rows until 2026-12-05: 2 rows were 0.97 / 0.98x the
 * time, alternating builds). */
static inline int block_rows(int M)
{
    return M >= BLOCK_MIN ? BLOCK_NR : 0;
}

/* block_dot against M >= 5 inputs: up to 24 accumulators, so over 12 inputs go in balanced
 * groups of 6-12, each over the rows while they are in L1. */
static void block_dot_m(const float *w, int K, const float *x, int ldx, float *y, int ldy,
                        int add, int M, int pf)
{
    const int groups = (M + 11) / 12;
    for (int g = 0, j = 0; g < groups; g++) {
        int m = (M - j) / (groups - g), p = g ? 0 : pf;
        const float *xg = x + (size_t)j * ldx;
        float *yg = y + (size_t)j * ldy;
        switch (m) {
        case 5: block_dot(w, K, xg, ldx, yg, ldy, add, 5, p); break;
        case 6: block_dot(w, K, xg, ldx, yg, ldy, add, 6, p); break;
        case 7: block_dot(w, K, xg, ldx, yg, ldy, add, 7, p); break;
        case 8: block_dot(w, K, xg, ldx, yg, ldy, add, 8, p); break;
        case 9: block_dot(w, K, xg, ldx, yg, ldy, add, 9, p); break;
        case 10: block_dot(w, K, xg, ldx, yg, ldy, add, 10, p); break;
        case 11: block_dot(w, K, xg, ldx, yg, ldy, add, 11, p); break;
        default: block_dot(w, K, xg, ldx, yg, ldy, add, 12, p); break;
        }
        j += m;
    }
}

/* 8 bfloat16 weights as fp32: the upper halves of 8 floats (exact). With AVX2 one widening
 * load and a shift (GCC 12 compiles the generic conversion below into two widenings, a byte
 * shift and an insert: four shuffles for 8 weights, the step bound by them instead of by
 * memory: 38 ms of CPU a SmolLM2 token against fp32's 35, one thread, 2026-12-07). */
static inline v8 load_bf8(const uint16_t *p)
{
#ifdef __AVX2__
    __m256i i = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return (v8)_mm256_slli_epi32(i, 16);
#else
    u16x8 h;
    memcpy(&h, p, sizeof h);
    i32x8 i = __builtin_convertvector(h, i32x8) << 16;
    return (v8)i;
#endif
}

/* One bfloat16 weight as fp32 (the scalar tails below). */
static inline float bf16_at(const uint16_t *w, int k)
{
    uint32_t u = (uint32_t)w[k] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#ifdef __AVX512F__
/* (defined after the int8 loads below) */
static inline float dot1_bf16(const uint16_t *w, const float *x, int K);
#else
DEFINE_DOT1(dot1_bf16, uint16_t, load_bf8, bf16_at)
#endif

#ifdef __AVX512F__
DEFINE_DOT1(dot1_bf16_256, uint16_t, load_bf8, bf16_at)

/* One row's product at 16 weights a vector where the CPU has AVX-512: a widened weight costs
 * two shuffles or conversions besides its FMA, so at 8 a vector the int8 and bf16 rows were
 * bound by those (one thread, SmolLM2, ms of CPU a token: fp32 35, bf16 22, int8 21, where
 * their bytes allow 1/2 and 1/4 of fp32's; 2026-12-07). WIDEN16 gives 16 weights as fp32. */
#define DEFINE_DOT1_512(name, T, WIDEN16, AT, PREFETCH)                                        \
    static inline float name(const T *w, const float *x, int K)                                \
    {                                                                                          \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                            \
        int k = 0;                                                                             \
        for (; k + 64 <= K; k += 64) {                                                         \
            PREFETCH(w + k);                                                                   \
            a0 = _mm512_fmadd_ps(WIDEN16(w + k), _mm512_loadu_ps(x + k), a0);                  \
            a1 = _mm512_fmadd_ps(WIDEN16(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);        \
            a2 = _mm512_fmadd_ps(WIDEN16(w + k + 32), _mm512_loadu_ps(x + k + 32), a2);        \
            a3 = _mm512_fmadd_ps(WIDEN16(w + k + 48), _mm512_loadu_ps(x + k + 48), a3);        \
        }                                                                                      \
        for (; k + 16 <= K; k += 16)                                                           \
            a0 = _mm512_fmadd_ps(WIDEN16(w + k), _mm512_loadu_ps(x + k), a0);                  \
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1),                    \
                                                     _mm512_add_ps(a2, a3)));                  \
        for (; k < K; k++)                                                                     \
            s += AT(w, k) * x[k];                                                              \
        return s;                                                                              \
    }

static inline __m512 widen16_bf16(const uint16_t *p)
{
    __m512i i = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(i, 16));
}

/* bytes of bf16 weights asked for ahead of a one-input product's reads (prefetcht0, the two
 * lines of each 64 weights): as for the int8 kernels (Q8_PF), the hardware prefetcher alone
 * kept too few lines in flight. SmolLM2 bf16 batch-1 step, one thread, ms of CPU (A/B in one
 * process, under load: a direction): none 20.4, 4 KB 19.0, 8 KB 18.8, 16 KB 19.2 (2026-12-07) */
#ifndef BF16_PF
#define BF16_PF 8192
#endif

static inline void prefetch_bf16(const uint16_t *w)
{
    _mm_prefetch((const char *)w + BF16_PF, _MM_HINT_T0);
    _mm_prefetch((const char *)w + BF16_PF + 64, _MM_HINT_T0);
}

DEFINE_DOT1_512(dot1_bf16, uint16_t, widen16_bf16, bf16_at, prefetch_bf16)
#endif

/* row_dot over a bfloat16 row (a draft model's weights: half the bytes to read). A draft
 * runs one-token steps, and two-token ones after a round that kept every draft: two inputs
 * per pass, then one. Kept apart from row_dot on purpose: one always-inlined kernel over
 * either weight type (the type a constant at each call) made GCC 12 compile row_dot's fp32
 * passes 4-9 % slower at 4-6 inputs (A/B, alternating builds, 2026-12-05). */
static void row_dot_bf16(const uint16_t *w, const float *x, int ldx, int K, int M, float *y,
                         int ldy, int add)
{
    int j = 0;
    for (; j + 2 <= M; j += 2) {
        const float *x0 = x + (size_t)j * ldx, *x1 = x0 + ldx;
        v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            v8 w0 = load_bf8(w + k), w1 = load_bf8(w + k + 8);
            a0 += w0 * load8(x0 + k);
            a1 += w1 * load8(x0 + k + 8);
            b0 += w0 * load8(x1 + k);
            b1 += w1 * load8(x1 + k + 8);
        }
        float s0 = hsum8(a0 + a1), s1 = hsum8(b0 + b1);
        for (; k < K; k++) {
            float f = bf16_at(w, k);
            s0 += f * x0[k];
            s1 += f * x1[k];
        }
        y[(size_t)j * ldy] = add ? y[(size_t)j * ldy] + s0 : s0;
        y[(size_t)(j + 1) * ldy] = add ? y[(size_t)(j + 1) * ldy] + s1 : s1;
    }
    for (; j < M; j++) {
        float s = dot1_bf16(w, x + (size_t)j * ldx, K);
        y[(size_t)j * ldy] = add ? y[(size_t)j * ldy] + s : s;
    }
}

typedef struct {
    const void *w;  /* fp32, bfloat16 or int8 rows (the model's wtype) */
    int rows, off;
    const uint16_t *scale;  /* int8: the rows' block scales (fp16), NB a row; else NULL */
} segment;

/* A segment of `rows` rows (of K columns) from a matrix of `total` rows at w (an int8 block:
 * its scales, then its rows). */
static inline segment seg_of(const void *w, int rows, int off, int total, int K, int wt)
{
    segment s = {w, rows, off, NULL};
    if (wt == W_I8 && w) {
        s.scale = (const uint16_t *)w;
        s.w = (const uint8_t *)w + (size_t)total * ((K + QB - 1) / QB) * 2;
    }
    return s;
}

/* Which of the segments (rows one after another) holds row r: its index, the row in it (*rr) */
static inline int seg_row(const segment *seg, int r, int *rr)
{
    int s = 0;
    while (r >= seg[s].rows) {
        r -= seg[s].rows;
        s++;
    }
    *rr = r;
    return s;
}

/* ---- int8 weights: llama.cpp's q8_0 arithmetic (lmlab/infer/precision.py) ----
 *
 * A weight row is blocks of QB = 32 columns, each with an fp16 scale; each product's input
 * vector is rounded per block of 32 too (quantize_x: scale max|x| / 127, x / scale rounded to
 * nearest even, as precision.quantize_acts). A row's product is then
 *     sum over blocks b of (wscale_b * xscale_b) * (exact integer dot of the block's bytes),
 * so the inner loop multiplies bytes: one VNNI instruction (vpdpbusd) per 64 weights where
 * the CPU has AVX-512 VNNI, four byte/word instructions per 32 with AVX2, plain C otherwise.
 * Why: widening each int8 weight to fp32 for an fp32 FMA had cost three vector instructions
 * per 16 weights, and the int8 step was bound by them at 42% of the memory bound (session 18).
 * vpdpbusd multiplies unsigned by signed bytes: the weights are stored as q + 128 (q ^ 0x80),
 * and 128 * sum(x_q) of each block (the input's, computed once per input) is taken off.
 * The kernel is picked at run time from the CPU's features (lm_q8_isa); a lower one can be
 * asked for (lm_model.isa, LMLAB_NATIVE_ISA in native.py) to test the fallbacks anywhere. */
enum { ISA_AUTO = 0, ISA_GENERIC = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };

/* The int8 kernel that runs for a request `want` (ISA_AUTO: the best this CPU has). */
int lm_q8_isa(int want)
{
    static int best = 0;
    if (!best) {
        int b = ISA_GENERIC;
#if defined(LM_X86) && defined(__GNUC__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            b = ISA_AVX2;
        if (b == ISA_AVX2 && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512vnni"))
            b = ISA_AVX512;
#endif
        best = b;
    }
    return want <= ISA_AUTO || want > best ? best : want;
}

/* An input vector rounded for the int8 products (quantize_x), in the forms the kernels read.
 * v: per pair of blocks 192 bytes, what VNNI reads for the pair side by side (one pointer an
 * input: eight inputs' three pointers each had not fitted the registers): cz (16 int32, 8 a
 * block: -128 x the sum of each 4 bytes of q, the start of the block's byte products, so that
 * they add (q_w + 128) x_q - 128 x_q = q_w x_q exactly), then q (the 64 bytes, the last block
 * padded with zeros), then sp (16 floats: each block's scale 8 times). a = |q| (AVX2's
 * unsigned operand), s = the blocks' scales, sum = each block's sum of q (plain C takes
 * 128 * sum off). */
typedef struct {
    uint8_t *v, *a;
    float *s;
    int32_t *sum;
} qvec;

enum { QV_PAIR = 192, QV_Q = 64, QV_SP = 128 };

/* block b's 32 rounded inputs, its 8 lanes' cz, its 8 spread scales */
static inline int8_t *qv_q(const qvec *x, int b)
{
    return (int8_t *)(x->v + (size_t)(b >> 1) * QV_PAIR + QV_Q + (b & 1) * QB);
}

static inline int32_t *qv_cz(const qvec *x, int b)
{
    return (int32_t *)(x->v + (size_t)(b >> 1) * QV_PAIR + (b & 1) * 32);
}

static inline float *qv_sp(const qvec *x, int b)
{
    return (float *)(x->v + (size_t)(b >> 1) * QV_PAIR + QV_SP + (b & 1) * 32);
}

static size_t qvec_bytes(int K)
{
    size_t NB = (size_t)(K + QB - 1) / QB, NP = (NB + 1) / 2;
    return NP * (QV_PAIR + 2 * QB) + NB * 2 * 4;
}

static qvec qvec_at(void *base, int K)
{
    int NB = (K + QB - 1) / QB, NP = (NB + 1) / 2;
    qvec x;
    x.v = (uint8_t *)base;
    x.a = x.v + (size_t)NP * QV_PAIR;
    x.s = (float *)(x.a + (size_t)NP * 2 * QB);
    x.sum = (int32_t *)(x.s + NB);
    return x;
}

/* The per-block tail of quantize_x: the lanes' sums (cz) and the spread scale (sp) */
static inline void quantize_lanes(qvec *o, int b, float s)
{
    const int8_t *q = qv_q(o, b);
    int32_t *cz = qv_cz(o, b);
    float *sp = qv_sp(o, b);
    for (int l = 0; l < 8; l++) {
        cz[l] = -128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
        sp[l] = s;
    }
}

/* x rounded per block of 32 (precision.quantize_acts, bit for bit: the same division and
 * rounding to nearest even, in vectors where the CPU has AVX-512: one input had cost 20% of
 * a batch-8 int8 step's CPU time in scalar divisions, perf, 2026-12-07). */
static void quantize_x(const float *x, int K, qvec *o)
{
    int b = 0, k0 = 0;
#ifdef __AVX512F__
    for (; k0 + QB <= K; b++, k0 += QB) {
        __m512 v0 = _mm512_loadu_ps(x + k0), v1 = _mm512_loadu_ps(x + k0 + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float s = amax / 127.0f;
        __m512i q0 = _mm512_setzero_si512(), q1 = q0;
        if (s > 0.0f) {
            const __m512 sv = _mm512_set1_ps(s), hi = _mm512_set1_ps(127.0f);
            const __m512 lo = _mm512_set1_ps(-127.0f);
            const int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            __m512 r0 = _mm512_roundscale_ps(_mm512_div_ps(v0, sv), rn);
            __m512 r1 = _mm512_roundscale_ps(_mm512_div_ps(v1, sv), rn);
            q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r0, lo), hi));
            q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r1, lo), hi));
        }
        _mm_storeu_si128((__m128i *)qv_q(o, b), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(qv_q(o, b) + 16), _mm512_cvtepi32_epi8(q1));
        _mm_storeu_si128((__m128i *)(o->a + k0), _mm512_cvtepi32_epi8(_mm512_abs_epi32(q0)));
        _mm_storeu_si128((__m128i *)(o->a + k0 + 16),
                         _mm512_cvtepi32_epi8(_mm512_abs_epi32(q1)));
        o->s[b] = s;
        o->sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        quantize_lanes(o, b, s);
    }
#endif
    for (; k0 < K; b++, k0 += QB) {
        int n = K - k0 < QB ? K - k0 : QB;
        float amax = 0.0f;
        for (int i = 0; i < n; i++) {
            float v = fabsf(x[k0 + i]);
            amax = v > amax ? v : amax;
        }
        float s = amax / 127.0f;
        int sum = 0;
        for (int i = 0; i < QB; i++) {
            int v = 0;
            if (i < n && s > 0.0f) {
                float r = nearbyintf(x[k0 + i] / s);  /* (the rounding mode: to nearest even) */
                v = r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            }
            qv_q(o, b)[i] = (int8_t)v;
            o->a[k0 + i] = (uint8_t)(v < 0 ? -v : v);
            sum += v;
        }
        o->s[b] = s;
        o->sum[b] = sum;
        quantize_lanes(o, b, s);
    }
}

/* fp16 bits as fp32 (exact) */
static inline float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {  /* zero or subnormal: m * 2^-24 */
        float f = (float)m * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    u = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The products of one int8 row (w: bytes q + 128, ws: its fp16 block scales) with NI rounded
 * inputs x[0 .. NI-1]: out[i] = w . x_i. Every kernel below takes NI <= Q8_NI inputs at once,
 * each weight block loaded (and its scale converted) once for all of them (batch-8 decoding,
 * speculative checks: one input at a time had read and re-widened the row per input, and
 * batch 8 ran at 1.26x llama.cpp's q8_0 against 1.61x at batch 1, session 19). Each input's
 * arithmetic is the same sequence of operations whatever NI is (its own accumulators, the
 * blocks in the same order), so a product in a batch equals the product alone, bit for bit
 * (tests/infer/test_int8_kernels.py), and batching never changes tokens. NI is a constant at
 * each call (the switches below): the accumulators stay in registers. */
enum { Q8_NI = 8 };

/* Blocks b0 .. in plain C: the kernel of CPUs without AVX2, and every kernel's last blocks.
 * (sum (q + 128) x - 128 sum x: GCC 12.2 at -O3 with AVX512-VNNI compiled
 * sum ((w ^ 0x80) as signed) * x and sum (w - 128) * x into vpdpbusd and dropped the 128s,
 * wrong by 128 sum x; this form it compiles right, and the kernel tests hold it) */
static inline __attribute__((always_inline)) void
q8_rows_c(const uint8_t *w, const uint16_t *ws, const qvec *x, int b0, int K, const int NI,
          float *out)
{
    float acc[Q8_NI] = {0};
    for (int b = b0, k0 = b0 * QB; k0 < K; b++, k0 += QB) {
        int n = K - k0 < QB ? K - k0 : QB;
        float h = half_to_float(ws[b]);
        for (int i = 0; i < NI; i++) {
            const int8_t *xq = qv_q(&x[i], b);
            int32_t d = 0;
            for (int t = 0; t < n; t++)
                d += (int32_t)w[k0 + t] * (int32_t)xq[t];
            acc[i] = fmaf(h * x[i].s[b], (float)(d - 128 * x[i].sum[b]), acc[i]);
        }
    }
    for (int i = 0; i < NI; i++)
        out[i] = acc[i];
}

static void q8_generic(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, int NI,
                       float *out)
{
    switch (NI) {
    case 1: q8_rows_c(w, ws, x, 0, K, 1, out); break;
    case 2: q8_rows_c(w, ws, x, 0, K, 2, out); break;
    case 3: q8_rows_c(w, ws, x, 0, K, 3, out); break;
    case 4: q8_rows_c(w, ws, x, 0, K, 4, out); break;
    case 5: q8_rows_c(w, ws, x, 0, K, 5, out); break;
    case 6: q8_rows_c(w, ws, x, 0, K, 6, out); break;
    case 7: q8_rows_c(w, ws, x, 0, K, 7, out); break;
    default: q8_rows_c(w, ws, x, 0, K, 8, out); break;
    }
}

/* bytes of weights asked for ahead of the int8 kernels' reads (prefetcht0): the kernels take
 * turns at computing and reading, and the hardware prefetcher alone kept too few lines in
 * flight: SmolLM2's head (28 MB int8), one thread, GB/s read by the VNNI kernel ahead 0 / 2 /
 * 4 / 8 / 16 KB, three rounds alternating builds under load: 16.0 / 13.8 / 16.1 / 19.5 / 24.7,
 * 12.4 / 17.1 / 21.3 / 28.1 / 27.2, 13.5 / 16.3 / 18.1 / 20.2 / 23.2 (2026-12-07). With the
 * kernels of session 20 (fewer instructions a pair), a whole batch-1 step, one thread, ms of
 * CPU under load (a direction): 8 / 16 / 32 KB 10.4 / 10.9 / 11.5 (2026-12-07). Beyond the
 * end of a matrix it asks for the next one's first lines, which the step reads next (arena:
 * the weights lie in read order); a prefetch never faults. */
#ifndef Q8_PF
#define Q8_PF 8192
#endif

#ifdef LM_X86
#define Q8_AVX2 __attribute__((target("avx2,fma,f16c")))
#define Q8_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
enum { Q8_NI_AVX2 = 3 };  /* 16 vector registers: two accumulators an input, and the block */

/* AVX2: a block's 32 products by vpmaddubsw(|x|, w * sign(x)) (pairs of at most 2 * 127 * 127:
 * no saturation), pairs added to 8 int32 by vpmaddwd; two blocks a pass, into two
 * accumulators an input. */
static inline __attribute__((always_inline)) Q8_AVX2 void
q8_pair_avx2(const uint8_t *w, const qvec *x, int b, __m256 ws0, __m256 ws1, const int NI,
             __m256 *a0, __m256 *a1)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    const int k = b * QB;
    _mm_prefetch((const char *)w + k + Q8_PF, _MM_HINT_T0);
    __m256i w0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + k)), flip);
    __m256i w1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + k + QB)), flip);
    for (int i = 0; i < NI; i++) {
        const int8_t *q = qv_q(&x[i], b);  /* (b even: blocks b and b + 1 side by side) */
        __m256i s0 = _mm256_sign_epi8(w0, _mm256_loadu_si256((const __m256i *)q));
        __m256i s1 = _mm256_sign_epi8(w1, _mm256_loadu_si256((const __m256i *)(q + QB)));
        __m256i p0 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(x[i].a + k)), s0), ones);
        __m256i p1 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(x[i].a + k + QB)), s1),
            ones);
        a0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0),
                                _mm256_mul_ps(ws0, _mm256_broadcast_ss(x[i].s + b)), a0[i]);
        a1[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                                _mm256_mul_ps(ws1, _mm256_broadcast_ss(x[i].s + b + 1)), a1[i]);
    }
}

static inline __attribute__((always_inline)) Q8_AVX2 void
q8_rows_avx2(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, const int NI,
             float *out)
{
    const int NB = K / QB;
    __m256 a0[Q8_NI_AVX2], a1[Q8_NI_AVX2];
    for (int i = 0; i < NI; i++)
        a0[i] = a1[i] = _mm256_setzero_ps();
    int b = 0;
    for (; b + 8 <= NB; b += 8) {  /* eight blocks' scales converted at once */
        __m256 wsv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ws + b)));
        for (int p = 0; p < 8; p += 2)
            q8_pair_avx2(w, x, b + p, _mm256_permutevar8x32_ps(wsv, _mm256_set1_epi32(p)),
                         _mm256_permutevar8x32_ps(wsv, _mm256_set1_epi32(p + 1)), NI, a0, a1);
    }
    for (; b + 2 <= NB; b += 2)
        q8_pair_avx2(w, x, b, _mm256_set1_ps(_cvtsh_ss(ws[b])),
                     _mm256_set1_ps(_cvtsh_ss(ws[b + 1])), NI, a0, a1);
    float tail[Q8_NI_AVX2];
    q8_rows_c(w, ws, x, b, K, NI, tail);
    for (int i = 0; i < NI; i++) {
        __m256 a = _mm256_add_ps(a0[i], a1[i]);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        out[i] = _mm_cvtss_f32(h) + tail[i];
    }
}

Q8_AVX2 static void q8_avx2(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, int NI,
                            float *out)
{
    switch (NI) {
    case 1: q8_rows_avx2(w, ws, x, K, 1, out); break;
    case 2: q8_rows_avx2(w, ws, x, K, 2, out); break;
    default: q8_rows_avx2(w, ws, x, K, 3, out); break;
    }
}

/* AVX-512 VNNI: two blocks (64 weights) per vpdpbusd, started at the input's cz (the 128s
 * taken off in the integer sums, exactly); the pair's two weight scales spread over their
 * 8 + 8 lanes by one permute of up to 16 converted at once, times the input's spread scales
 * (sp), one FMA per pair into one of two accumulators an input. */
static inline __attribute__((always_inline)) Q8_VNNI void
q8_rows_vnni(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, const int NI,
             float *out)
{
    const int NB = K / QB;
    __m512 a0[Q8_NI], a1[Q8_NI];
    for (int i = 0; i < NI; i++)
        a0[i] = a1[i] = _mm512_setzero_ps();
    const __m512i pair0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_set1_epi32(2);
    int b = 0;
    while (b + 2 <= NB) {
        int g = (NB - b < 16 ? NB - b : 16) & ~1;  /* blocks in this group: even, <= 16 */
        __mmask16 mk = (__mmask16)((1u << g) - 1);
        __m512 wsv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, ws + b));
        __m512i idx = pair0;
        for (int p = 0; p < g; p += 2) {
            const int k = (b + p) * QB;
            const size_t at = (size_t)((b + p) >> 1) * QV_PAIR;
            _mm_prefetch((const char *)w + k + Q8_PF, _MM_HINT_T0);
            __m512i wv = _mm512_loadu_si512(w + k);
            __m512 wsp = _mm512_permutexvar_ps(idx, wsv);
            for (int i = 0; i < NI; i++) {
                const uint8_t *v = x[i].v + at;
                __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512(v), wv,
                                                _mm512_loadu_si512(v + QV_Q));
                __m512 sc = _mm512_mul_ps(wsp, _mm512_loadu_ps(v + QV_SP));
                if (p & 2)
                    a1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, a1[i]);
                else
                    a0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, a0[i]);
            }
            idx = _mm512_add_epi32(idx, two);
        }
        b += g;
    }
    float tail[Q8_NI];
    q8_rows_c(w, ws, x, b, K, NI, tail);
    for (int i = 0; i < NI; i++)
        out[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i])) + tail[i];
}

Q8_VNNI static void q8_vnni(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, int NI,
                            float *out)
{
    switch (NI) {
    case 1: q8_rows_vnni(w, ws, x, K, 1, out); break;
    case 2: q8_rows_vnni(w, ws, x, K, 2, out); break;
    case 3: q8_rows_vnni(w, ws, x, K, 3, out); break;
    case 4: q8_rows_vnni(w, ws, x, K, 4, out); break;
    case 5: q8_rows_vnni(w, ws, x, K, 5, out); break;
    case 6: q8_rows_vnni(w, ws, x, K, 6, out); break;
    case 7: q8_rows_vnni(w, ws, x, K, 7, out); break;
    default: q8_rows_vnni(w, ws, x, K, 8, out); break;
    }
}
#endif

/* The inputs a kernel takes at once */
static inline int q8_ni(int isa)
{
#ifdef LM_X86
    if (isa == ISA_AVX2)
        return Q8_NI_AVX2;
#endif
    (void)isa;
    return Q8_NI;
}

/* out[i] = w . x_i for NI <= q8_ni(isa) inputs through the kernel isa */
static inline void q8_rows(const uint8_t *w, const uint16_t *ws, const qvec *x, int K, int NI,
                           int isa, float *out)
{
#ifdef LM_X86
    if (isa == ISA_AVX512) {
        q8_vnni(w, ws, x, K, NI, out);
        return;
    }
    if (isa == ISA_AVX2) {
        q8_avx2(w, ws, x, K, NI, out);
        return;
    }
#endif
    q8_generic(w, ws, x, K, NI, out);
}

/* This thread's contiguous run of rows, total * t / nt .. total * (t + 1) / nt (the int8 and
 * the one-input products split rows this way: a stream the hardware prefetcher follows). */
static inline void thread_rows(int total, int *lo, int *hi)
{
    int tid = 0, nt = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nt = omp_get_num_threads();
#endif
    *lo = (int)((int64_t)total * tid / nt);
    *hi = (int)((int64_t)total * (tid + 1) / nt);
}

/* How a matvec splits its rows between the threads (the one-input and int8 products):
 * MV_EACH: each thread takes its share of each segment (rows seg.rows * t / nt .. of every
 * segment: gate and up, so that a thread's SiLU needs only its own rows), else its share of
 * the segments' rows one after another (total * t / nt ..: q, k and v as one run).
 * MV_NOSYNC: no barrier at the end (the caller has more to do on its own rows first). */
enum { MV_EACH = 1, MV_NOSYNC = 2, MV_AMX = 4, MV_STEAL = 8, MV_SILU = 16 };
/* MV_AMX: bf16 rows on AMX tiles. MV_STEAL: the rows handed out in chunks, a thread done with
 * its own share taking from the others' (below). MV_SILU (with MV_EACH, over gate and up): the
 * SiLU over each chunk (or each thread's share) right after its rows. */

/* This thread's rows [*a, *b) of segment s (its rows from base on) for a split `how` over
 * `total` rows in all */
static inline void own_rows(const segment *seg, int s, int base, int total, int how, int *a,
                            int *b)
{
    int lo, hi;
    if (how & MV_EACH) {
        thread_rows(seg[s].rows, a, b);
        return;
    }
    thread_rows(total, &lo, &hi);
    *a = lo > base ? lo - base : 0;
    *b = hi - base < seg[s].rows ? hi - base : seg[s].rows;
    *b = *b > *a ? *b : *a;
}

/* The product a thread runs next (its first rows are asked for ahead while it waits at a
 * barrier, see PF_NEXT). */
typedef struct {
    const segment *seg;
    int n_seg, K, how;
} mv_next;

/* bytes of a thread's first weights of the next product asked for into L2 (prefetcht1) before
 * the barrier ahead of it: after a barrier a thread's stream starts cold (its in-loop
 * prefetches run DOT1_PF / BF16_PF / Q8_PF ahead of its reads, into the rows the next thread
 * reads, not to its own next start), and between products the memory is idle while the
 * threads meet and do the small parts. Not measured alone (2026-12-07, a loaded machine: at
 * one thread, where it is now skipped, the step took 1.006x the median time with it than
 * without, within the noise). Alone at 2 threads (session 21, bench_native_ab.py, SmolLM2,
 * 8 rounds of 64 tokens, B/A of the least and median ms per token against session 20's step):
 * with 8 KB fp32 1.039 / 1.028, bf16 1.004 / 0.997, int8 0.952 / 0.980; with 0 fp32 1.005 /
 * 0.998, bf16 0.977 / 0.999; int8 0 vs 8 KB 0.948 / 0.998. It costs fp32 ~3% and buys
 * nothing measurable, so it is off by default; -DPF_NEXT=8192 turns it on. */
#ifndef PF_NEXT
#define PF_NEXT 0
#endif

static inline void prefetch_next(const mv_next *nx, int wt)
{
    if (!nx || PF_NEXT <= 0)
        return;
#ifdef _OPENMP
    if (omp_get_num_threads() == 1)  /* one run through the arena: the in-loop prefetches
                                      * already run into the next product's first rows */
        return;
#endif
    int total = 0;
    for (int s = 0; s < nx->n_seg; s++)
        total += nx->seg[s].rows;
    const size_t row = wt == W_I8 ? (size_t)nx->K : wt == W_BF16 ? 2 * (size_t)nx->K
                                                                 : 4 * (size_t)nx->K;
    for (int s = 0, base = 0; s < nx->n_seg; base += nx->seg[s].rows, s++) {
        int a, b;
        own_rows(nx->seg, s, base, total, nx->how, &a, &b);
        if (b <= a || !nx->seg[s].w)
            continue;
        const char *p = (const char *)nx->seg[s].w + (size_t)a * row;
        size_t n = (size_t)(b - a) * row;
        n = n < PF_NEXT ? n : PF_NEXT;
        for (size_t o = 0; o < n; o += 64)
            __builtin_prefetch(p + o, 0, 2);  /* (prefetcht1) */
        if (!(nx->how & MV_EACH))
            break;  /* one run: its start */
    }
}

/* The end of a thread's share of a row-split product: ask for its first rows of the next one
 * (nx, or NULL), then the barrier, or none with MV_NOSYNC (the time goes to phase ph). */
static inline void end_product(const mv_next *nx, int wt, int how, int ph)
{
    prefetch_next(nx, wt);
    if (!(how & MV_NOSYNC))
        SYNC(ph);
    else
        PROF_MARK(ph);
    (void)ph;
}

static inline void silu_mul8(float *g, int I, int n);

/* bytes of weights a claim takes (MV_STEAL); -DSTEAL_ON=0 builds the static split */
#ifndef STEAL_ON
#define STEAL_ON 1
#endif
#ifndef STEAL_CHUNK
#define STEAL_CHUNK 16384
#endif

/* Rows handed out in chunks (MV_STEAL). Each thread starts on its own share (thread_rows:
 * the same contiguous run as without stealing) and claims it chunk by chunk from the front;
 * once its share is done it claims the other threads' chunks from their back ends. One 64-bit
 * word a thread, on its own cache line, holds (product, front, back); a claim is one
 * compare-exchange on it, uncontended until a thread steals. The product number (counted by
 * each thread as it enters a stealing product, from 1 at the step's start; the words are
 * zeroed before the step's parallel region) tells a share of this product from a stale one:
 * a word still holding an earlier product is first set to this product's share, by its owner
 * or by a thief, whichever comes first (both write the same value). Every row is computed
 * once, by the same code whichever thread takes it, so the outputs do not depend on who did:
 * the step's logits are bit for bit those of the static split. A thread that lost time (the
 * other process on its core, a slow page) no longer holds the other at the barrier.
 * Two stealing products have a barrier between them (the AMX groups of inputs too, which
 * without stealing have none): so every share of a product is claimed before any thread
 * starts the next. Without it, batch-4 and -5 bf16 steps (prefills of 44-55 inputs in 3-4
 * groups) gave other logits in about one run of three when the thief's guard below was only
 * "all claimed": a thief two products ahead could find a share all claimed for the product
 * before the one it was on, move it on to its own and so skip its owner's share of the
 * product between (its owner then found the word ahead and took nothing). The guard now asks
 * for the product just before: without the barrier, dev/native_steal_stress.py --runs 4 on an
 * idle machine gave 3 and 2 mismatches with the old guard, 0 and 0 with this one. The barrier
 * stays until that is timed and tried more widely. */
enum { STEAL_MAX = 64, ST_BITS = 22 };
#define ST_MASK ((UINT64_C(1) << ST_BITS) - 1)
#define ST_PACK(e, f, b) (((uint64_t)(e) << (2 * ST_BITS)) | ((uint64_t)(f) << ST_BITS) \
                          | (uint64_t)(b))
typedef struct {
    _Alignas(64) uint64_t v;
} steal_word;
static steal_word steal_at[STEAL_MAX];
static _Thread_local uint32_t steal_product;  /* this thread's stealing products this step */
static int steal_delay_us;  /* tests: thread 0 sleeps this long before each stealing product */
static int64_t steal_count;  /* chunks taken from another thread's share, since the start */

/* tests (tests/infer/test_native_threads.py): hold thread 0 back `delay_us` at the start of
 * each stealing product, so that the others take its rows; returns the chunks stolen so far */
int64_t lm_steal_test(int delay_us)
{
    steal_delay_us = delay_us;
    return __atomic_load_n(&steal_count, __ATOMIC_RELAXED);
}

static void steal_sleep(int us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* before a step's parallel region (one thread): no share is current */
static void steal_reset(int nt)
{
    for (int t = 0; t < nt && t < STEAL_MAX; t++)
        __atomic_store_n(&steal_at[t].v, 0, __ATOMIC_RELAXED);
}

/* Claim rows of thread v's share [lo, hi) of product e: its owner `chunk` from the front, a
 * thief half of what is left from the back, where at least two chunks are left (the last
 * few stay with their owner, whose stream is running). A word still on an earlier product is
 * first set to this product's share, by the owner or a thief, whichever comes first (both
 * write the same value), by a thief only where the word holds the product just before this
 * one and that share is all claimed (a guard: the products meet between them). 1 with the
 * rows in [*a, *b), 0 when none is left. */
static int steal_claim(int v, uint32_t e, int lo, int hi, int chunk, int back, int *a, int *b)
{
    uint64_t *w = &steal_at[v].v, cur = __atomic_load_n(w, __ATOMIC_RELAXED);
    for (;;) {
        const uint32_t ce = (uint32_t)(cur >> (2 * ST_BITS));
        const int f = (int)(cur >> ST_BITS & ST_MASK), k = (int)(cur & ST_MASK);
        uint64_t next;
        int n = 0;
        if (ce > e)  /* a later product's: its owner has claimed all of this one's */
            return 0;
        if (ce < e) {
            if (back && (f < k || ce + 1 != e))  /* its owner is still on an earlier one */
                return 0;
            next = ST_PACK(e, lo, hi);
        } else {
            if (f >= k || (back && k - f < 2 * chunk))
                return 0;
            n = back ? (k - f) / 2 : k - f < chunk ? k - f : chunk;
            next = back ? ST_PACK(e, f, k - n) : ST_PACK(e, f + n, k);
        }
        if (!__atomic_compare_exchange_n(w, &cur, next, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;  /* (cur now holds what the word had) */
        if (n) {
            *a = back ? k - n : f;
            *b = back ? k : f + n;
            return 1;
        }
        cur = next;
    }
}

/* The rows of a stealing product, chunk by chunk: this thread's own share first, then the
 * others' (the nearest first). `work(a, b)` runs rows [a, b) of the `total`. */
#define STEAL_ROWS(total, chunk, work)                                                         \
    do {                                                                                       \
        int nt_ = steal_threads(), me_ = steal_me(), a_, b_;                                   \
        uint32_t e_ = ++steal_product;                                                         \
        if (steal_delay_us && me_ == 0)                                                        \
            steal_sleep(steal_delay_us);                                                       \
        for (int i_ = 0; i_ < nt_; i_++) {                                                     \
            int v_ = (me_ + i_) % nt_;                                                         \
            int lo_ = (int)((int64_t)(total) * v_ / nt_);                                      \
            int hi_ = (int)((int64_t)(total) * (v_ + 1) / nt_);                                \
            while (steal_claim(v_, e_, lo_, hi_, (chunk), i_ > 0, &a_, &b_)) {                 \
                if (i_ > 0)                                                                    \
                    __atomic_fetch_add(&steal_count, 1, __ATOMIC_RELAXED);                     \
                work(a_, b_);                                                                  \
            }                                                                                  \
        }                                                                                      \
    } while (0)

static inline int steal_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline int steal_me(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Whether a product may steal: one thread has no one to steal from, and the words hold
 * STEAL_MAX threads' shares and rows below 2^ST_BITS. */
static inline int steal_ok(int total)
{
    return steal_threads() > 1 && steal_threads() <= STEAL_MAX && total < (int)ST_MASK;
}

/* Units [0, n) of a product over the threads, `work(a, b)` running units [a, b): handed out
 * in chunks of `chunk` (MV_STEAL), else split evenly (omp for). */
#define SHARE_UNITS(how, n, chunk, work)                                                       \
    do {                                                                                       \
        if (((how) & MV_STEAL) && steal_ok(n)) {                                               \
            STEAL_ROWS(n, chunk, work);                                                        \
        } else {                                                                               \
            _Pragma("omp for schedule(static) nowait")                                         \
            for (int u_ = 0; u_ < (n); u_++)                                                   \
                work(u_, u_ + 1);                                                              \
        }                                                                                      \
    } while (0)

/* claim size in units of `unit_bytes` of weights (MV_STEAL) */
static inline int steal_chunk(size_t unit_bytes)
{
    return STEAL_CHUNK / unit_bytes > 1 ? (int)(STEAL_CHUNK / unit_bytes) : 1;
}

/* rows [a, b) of the segments' rows one after another (r counts over all of them): y's rows
 * (+)= each row . x, fp32 or bf16 weights */
static inline void dot1_rows(const segment *seg, int a, int b, const float *x, int K, float *y,
                             int add, int wt)
{
    int rr, s = seg_row(seg, a, &rr);
    for (int r = a; r < b; r++, rr++) {
        while (rr >= seg[s].rows) {
            rr -= seg[s].rows;
            s++;
        }
        float v = wt == W_BF16 ? dot1_bf16((const uint16_t *)seg[s].w + (size_t)rr * K, x, K)
                               : dot1((const float *)seg[s].w + (size_t)rr * K, x, K);
        float *yr = y + seg[s].off + rr;
        *yr = add ? *yr + v : v;
    }
}

/* Each thread's own normed inputs (grown as needed, kept: M x D floats): every thread norms
 * the residual stream itself, so no barrier waits for one thread's norm. */
static _Thread_local float *own_buf;
static _Thread_local size_t own_cap;

static float *own_floats(size_t n)
{
    if (own_cap < n) {
        free(own_buf);
        own_cap = (n + 15) / 16 * 16;
        own_buf = aligned_alloc(64, own_cap * sizeof(float));
    }
    return own_buf;
}

/* Each thread's rounded inputs (grown as needed, kept: a few KB) */
static _Thread_local void *q8_buf;
static _Thread_local size_t q8_cap;

/* int8 rows [a, b) of segment sg against the M rounded inputs xq, in balanced groups of at
 * most the kernel's inputs, each row against every input while it is in L1 */
static void q8_span(const segment *sg, int a, int b, const qvec *xq, int K, int M, float *y,
                    int ldy, int add, int isa)
{
    const int NB = (K + QB - 1) / QB, cap = q8_ni(isa), groups = (M + cap - 1) / cap;
    float *ys = y + sg->off;
    const uint8_t *W = (const uint8_t *)sg->w;
    for (int r = a; r < b; r++) {
        const uint8_t *wr = W + (size_t)r * K;
        const uint16_t *sr = sg->scale + (size_t)r * NB;
        for (int g = 0, j = 0; g < groups; g++) {  /* balanced groups of inputs */
            int n = (M - j) / (groups - g);
            float v[Q8_NI];
            q8_rows(wr, sr, xq + j, K, n, isa, v);
            for (int i = 0; i < n; i++) {
                float *yj = ys + (size_t)(j + i) * ldy + r;
                *yj = add ? *yj + v[i] : v[i];
            }
            j += n;
        }
    }
}

/* SiLU(gate) * up over units [a, b) of every input's gate/up rows (MV_SILU) */
static inline void silu_span(float *gu, int ldy, int I, int M, int a, int b)
{
    for (int j = 0; j < M; j++)
        for (int i = a; i < b; i += 8)
            silu_mul8(gu + (size_t)j * ldy + i, I, b - i < 8 ? b - i : 8);
}

/* matvec over int8 segments: every thread rounds the M inputs itself (a few microseconds; no
 * barrier to share them), then takes its rows (`how`: its own share, or chunks with
 * MV_STEAL), each row against every input while it is in L1; asks for its first rows of the
 * next product (nx, or NULL); then one barrier (none with MV_NOSYNC). */
static void matvec_q8(const segment *seg, int n_seg, const float *x, int ldx, int K, int M,
                      float *y, int ldy, int add, int isa, int ph, int how, const mv_next *nx)
{
    int total = 0;
    for (int s = 0; s < n_seg; s++)
        total += seg[s].rows;
    const size_t per = (qvec_bytes(K) + 63) / 64 * 64;
    if (q8_cap < per * M) {
        free(q8_buf);
        q8_cap = per * M;
        q8_buf = aligned_alloc(64, q8_cap);
    }
    qvec xq[M];
    for (int j = 0; j < M; j++) {
        xq[j] = qvec_at((char *)q8_buf + per * j, K);
        quantize_x(x + (size_t)j * ldx, K, &xq[j]);
    }
    const int each = how & MV_EACH, units = each ? seg[0].rows : total;
    if ((how & MV_STEAL) && steal_ok(units)) {
        const int chunk = steal_chunk((size_t)(each ? n_seg : 1) * K);
#define Q8_ROWS(a, b)                                                                          \
        do {                                                                                   \
            if (each) {                                                                        \
                for (int s_ = 0; s_ < n_seg; s_++)                                             \
                    q8_span(&seg[s_], a, b, xq, K, M, y, ldy, add, isa);                       \
                if (how & MV_SILU)                                                             \
                    silu_span(y + seg[0].off, ldy, seg[0].rows, M, a, b);                      \
                break;                                                                         \
            }                                                                                  \
            int rr_, s_ = seg_row(seg, a, &rr_);                                               \
            for (int r_ = a; r_ < b; s_++, rr_ = 0) {                                          \
                int n_ = seg[s_].rows - rr_ < b - r_ ? seg[s_].rows - rr_ : b - r_;            \
                q8_span(&seg[s_], rr_, rr_ + n_, xq, K, M, y, ldy, add, isa);                  \
                r_ += n_;                                                                      \
            }                                                                                  \
        } while (0)
        STEAL_ROWS(units, chunk, Q8_ROWS);
#undef Q8_ROWS
        end_product(NULL, W_I8, how, ph);
        return;
    }
    for (int s = 0, base = 0; s < n_seg; base += seg[s].rows, s++) {
        int a, b;
        own_rows(seg, s, base, total, how, &a, &b);
        q8_span(&seg[s], a, b, xq, K, M, y, ldy, add, isa);
    }
    if (how & MV_SILU) {  /* (each thread over its own rows: MV_EACH) */
        int i0, i1;
        thread_rows(seg[0].rows, &i0, &i1);
        silu_span(y + seg[0].off, ldy, seg[0].rows, M, i0, i1);
    }
    end_product(nx, W_I8, how, ph);
}

/* The int8 product alone (tests): y[j * R + r] = W[r] . x_j for M inputs x_j = x + j * K over
 * an int8 block of R rows of K (scales, then bytes, as native.py's int8_block), with the
 * kernel `isa` (lm_q8_isa's choice for it); one thread. Returns the kernel used. */
int lm_q8_matvec(const void *block, int R, int K, const float *x, int M, float *y, int isa)
{
    isa = lm_q8_isa(isa);
    segment s = seg_of(block, R, 0, R, K, W_I8);
    matvec_q8(&s, 1, x, K, K, M, y, R, 0, isa, P_HEAD, 0, NULL);
    return isa;
}

/* Rows r0 .. r0 + n - 1 of a bf16 segment as fp32 (exact), into out (n x K). */
static void widen_rows(const segment *sg, int r0, int n, int K, float *out)
{
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * K;
        int k = 0;
        const uint16_t *b = (const uint16_t *)sg->w + (size_t)(r0 + i) * K;
        for (; k + 8 <= K; k += 8) {
            v8 v = load_bf8(b + k);
            memcpy(o + k, &v, sizeof v);
        }
        for (; k < K; k++)
            o[k] = bf16_at(b, k);
    }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && \
    defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define AMX_BF16 1
/* Several inputs against bfloat16 rows on AMX tiles: each 16 rows x 32 columns of weights one
 * tile read straight from the rows (A); each input split into two bfloat16 parts, hi = x rounded
 * to nearest even and lo = x - hi rounded, in the pair-interleaved layout the instruction reads
 * (B: 16 pairs of columns x N inputs); two tdpbf16ps (hi, then lo) a 16 x N x 32 product into
 * fp32 (C). hi + lo is x within 2^-16 of it (16 significant bits of 24), so the products are
 * those of the fp32 inputs up to ~BF16_U^2 of their magnitude, below fp32 sums' own error
 * over these widths: batch sizes that take tiles and those that do not give the same tokens
 * as before. At batch 8 the 8-lane fp32 FMAs had bound the products (session 22: ~22 of a
 * ~26 ms step, bf16 no faster than fp32); the tiles' multiply-adds cost next to nothing, the
 * weights' bytes bound them. Linux hands out the tile state on request (arch_prctl
 * ARCH_REQ_XCOMP_PERM), once a process; where a VM or kernel refuses, the FMA kernels run. */
static int amx_state;  /* 0: not asked yet, 1: usable, -1: not */
static int64_t amx_runs;  /* products run on tiles (thread 0 counts; kernel tests) */

static int amx_ready(void)
{
    if (!amx_state) {
        unsigned a, b, c, d;
        int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1);
        /* ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA */
        amx_state = ok && syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : -1;
    }
    return amx_state > 0;
}

/* this thread's tile shapes for N inputs: C 16 x N floats, A 16 x 32 bf16, B (hi, lo) 16 x N
 * pairs each. Loaded for every product and released after it: torch's oneDNN kernels use the
 * tiles too, on the same threads, with shapes of their own. */
static void amx_config(int N)
{
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((packed, aligned(64))) cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.colsb[0] = (uint16_t)(N * 4);
    cfg.rows[0] = 16;
    cfg.colsb[1] = 64;
    cfg.rows[1] = 16;
    cfg.colsb[2] = cfg.colsb[3] = (uint16_t)(N * 4);
    cfg.rows[2] = cfg.rows[3] = 16;
    _tile_loadconfig(&cfg);
}

static _Thread_local uint32_t *amx_buf;
static _Thread_local size_t amx_cap;

/* 16 bfloat16 (the upper halves of 16 floats) as fp32, exactly */
static inline __m512 amx_widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* N inputs of K (K a multiple of 32) as the hi and lo bf16 parts in B's layout: pair p of
 * input n at [p * N + n], hi's K/2 x N words then lo's; each thread makes its own (a few KB) */
static const uint32_t *amx_inputs(const float *x, int ldx, int K, int N)
{
    size_t n = (size_t)K / 2 * N;
    if (amx_cap < 2 * n) {
        free(amx_buf);
        amx_cap = (2 * n + 15) / 16 * 16;
        amx_buf = aligned_alloc(64, amx_cap * sizeof(uint32_t));
    }
    const __m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                           5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(N));
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * ldx;
        for (int k = 0; k < K; k += 32) {
            __m512 a = _mm512_loadu_ps(xi + k), b = _mm512_loadu_ps(xi + k + 16);
            __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            __m512 ra = _mm512_sub_ps(a, amx_widen(_mm512_castsi512_si256(hi)));
            __m512 rb = _mm512_sub_ps(b, amx_widen(_mm512_extracti64x4_epi64(hi, 1)));
            __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(rb, ra);
            uint32_t *o = amx_buf + (size_t)(k / 2) * N + i;
            _mm512_i32scatter_epi32(o, at, hi, 4);
            _mm512_i32scatter_epi32(o + n, at, lo, 4);
        }
    }
    return amx_buf;
}

/* y[n, r] (+)= row r of the 16 rows w . input n, for the N inputs in xb (amx_inputs: hi
 * and lo) */
static void amx_rows(const uint16_t *w, int K, const uint32_t *xb, int N, float *y, int ldy,
                     int add)
{
    const size_t lo = (size_t)K / 2 * N;  /* the lo parts after the hi ones */
    _tile_zero(0);
    for (int k = 0; k < K; k += 32) {
        _tile_loadd(1, w + k, K * 2);
        _tile_loadd(2, xb + (size_t)(k / 2) * N, N * 4);
        _tile_loadd(3, xb + lo + (size_t)(k / 2) * N, N * 4);
        _tile_dpbf16ps(0, 1, 2);
        _tile_dpbf16ps(0, 1, 3);
    }
    float c[16 * 16];
    _tile_stored(0, c, N * 4);
    for (int n = 0; n < N; n++) {
        float *yn = y + (size_t)n * ldy;
        for (int r = 0; r < 16; r++)
            yn[r] = add ? yn[r] + c[r * N + n] : c[r * N + n];
    }
}
#endif

/* y[j, off_s + r] (+)= W_s[r] . x_j over the segments' rows one after another (q, k and v as
 * one product: one loop, one barrier). Called by every thread of the step's parallel region:
 * each takes a contiguous run of rows (a stream the hardware prefetcher follows). */
static void matvec(const segment *seg, int n_seg, const float *x, int ldx, int K, int M,
                   float *y, int ldy, int add, int wt, int isa, int ph, int how,
                   const mv_next *nx)
{
    (void)ph;  /* the phase the time goes to (LM_PROF) */
    if (wt == W_I8) {
        matvec_q8(seg, n_seg, x, ldx, K, M, y, ldy, add, isa, ph, how, nx);
        return;
    }
    int total = 0;
    for (int s = 0; s < n_seg; s++)
        total += seg[s].rows;
    if (M == 1 && (how & MV_STEAL) && steal_ok(total)) {
        /* one input, the rows handed out in chunks of ~STEAL_CHUNK bytes of weights (a unit
         * of MV_EACH is a row of each segment) */
        const int eb = wt == W_BF16 ? 2 : 4, units = how & MV_EACH ? seg[0].rows : total;
        const int chunk = steal_chunk((size_t)(how & MV_EACH ? n_seg : 1) * K * eb);
#define MV_ROWS(a, b)                                                                          \
        do {                                                                                   \
            if (!(how & MV_EACH)) {                                                            \
                dot1_rows(seg, a, b, x, K, y, add, wt);                                        \
                break;                                                                         \
            }                                                                                  \
            for (int s_ = 0; s_ < n_seg; s_++)                                                 \
                dot1_rows(seg + s_, a, b, x, K, y, add, wt);                                   \
            if (how & MV_SILU)                                                                 \
                silu_span(y + seg[0].off, ldy, seg[0].rows, 1, a, b);                          \
        } while (0)
        STEAL_ROWS(units, chunk, MV_ROWS);
#undef MV_ROWS
        end_product(NULL, wt, how, ph);
        return;
    }
    if (M == 1) {
        /* one input: each thread walks its own contiguous run of rows (total * t / nt ..
         * total * (t + 1) / nt) with the dot product inlined, then one barrier (the step
         * alone read 51.1 -> 53.7 GB/s for fp32 against an omp-for loop calling row_dot per
         * row, alternating builds, 2026-12-05) */
        for (int s = 0, base = 0; s < n_seg; base += seg[s].rows, s++) {
            int a, b;
            own_rows(seg, s, base, total, how, &a, &b);
            float *ys = y + seg[s].off;
            if (wt == W_BF16) {
                const uint16_t *W = (const uint16_t *)seg[s].w;
                for (int r = a; r < b; r++) {
                    float v = dot1_bf16(W + (size_t)r * K, x, K);
                    ys[r] = add ? ys[r] + v : v;
                }
            } else {
                const float *W = (const float *)seg[s].w;
                for (int r = a; r < b; r++) {
                    float v = dot1(W + (size_t)r * K, x, K);
                    ys[r] = add ? ys[r] + v : v;
                }
            }
        }
        if (how & MV_SILU) {  /* (each thread over its own rows: MV_EACH) */
            int i0, i1;
            thread_rows(seg[0].rows, &i0, &i1);
            silu_span(y + seg[0].off, ldy, seg[0].rows, 1, i0, i1);
        }
        end_product(nx, wt, how, ph);
        return;
    }
    /* several inputs. 5 or more: blocks of 2 rows (in groups of at most 12 inputs; 5-6 inputs took
     * 4 rows until 2026-12-05) in one pass each (block_dot), the weights asked for 8 KB ahead: a 5
     * / 8 / 11-input step 0.96 / 0.86 / 0.76x the time of four inputs per pass over one row
     * (alternating builds, slow memory level; 11 inputs 25.6 vs ~33 ms at the fast one), with this
     * CPU's two 256-bit FMAs per cycle per core mostly busy (5.3-6.6 G a second a core on weights
     * in L2, against 2.9-4.5 G four inputs per pass: those reload each weight vector for every four
     * inputs, and the inputs for every row). 2-4 inputs: one row at a time, four inputs per pass
     * (then 2, then 1) - there blocks of 4 rows were 1.03-1.27x slower (2026-12-05, and again with
     * block_dot's faster sums): four short streams, which the hardware prefetcher follows worse
     * than one long one. While a row is worked on from L1 nothing else asks for memory and the
     * prefetcher runs dry, so the first pass over each row asks for the weights ahead into L2: over
     * long rows only (the down projection's 1536, two rows ahead) it took a step of 2 / 3 / 4
     * inputs from 1.25 / 1.33 / 1.53x a one-input step to 1.08 / 1.23 / 1.40x (2026-12-04); 8 KB
     * ahead over every row, a 4-input step got another 0.85x (4 / 16 / 32 KB: 0.87-0.90x;
     * prefetcht0: slower; 2 inputs: 1.06x slower, so they keep the long rows' distance,
     * 2026-12-05). (Three inputs per pass, 5 = 3 + 2: slower than 4 + 1.) */
#ifdef AMX_BF16
    int tiles = (how & MV_AMX) && wt == W_BF16 && M >= BLOCK_MIN && K % 32 == 0;
    for (int s = 0; tiles && s < n_seg; s++)
        tiles = seg[s].rows % 16 == 0;
    if (tiles) {
        if (omp_get_thread_num() == 0)
            amx_runs++;
        /* over 16 inputs: balanced groups of at most 16, one pass over the rows each (the
         * groups write other inputs' outputs: no barrier between them but for stealing) */
        const int groups = (M + 15) / 16;
        for (int g = 0, j = 0; g < groups; g++) {
            const int m = (M - j) / (groups - g);
            amx_config(m);
            const uint32_t *xb = amx_inputs(x + (size_t)j * ldx, ldx, K, m);
#define AMX_UNITS(a, b)                                                                        \
            for (int u = a; u < b; u++) {                                                      \
                int rr, s = seg_row(seg, 16 * u, &rr);                                         \
                amx_rows((const uint16_t *)seg[s].w + (size_t)rr * K, K, xb, m,                \
                         y + (size_t)j * ldy + seg[s].off + rr, ldy, add);                     \
            }
            SHARE_UNITS(how, total / 16, steal_chunk(16 * 2 * (size_t)K), AMX_UNITS);
#undef AMX_UNITS
            j += m;
            if ((how & MV_STEAL) && g + 1 < groups)
                SYNC(ph);  /* (stealing products meet between them: see steal_claim) */
        }
        _tile_release();
        SYNC(ph);
        return;
    }
#endif
    const int pf = M >= 3 ? 2048 : K >= 1024 ? 2 * K : 0;
    const int rows = block_rows(M);
    int by = rows > 0;
    for (int s = 0; by && s < n_seg; s++)
        by = seg[s].rows % rows == 0;
    if (by && wt != W_F32) {
        /* bf16 rows against 5 or more inputs (int8 never gets here: matvec_q8): each block of
         * rows widened once into fp32 (exact), then block_dot over it from L1, as fp32 rows. One row against four inputs per pass had
         * cost a batch-8 SmolLM2 step 58 (bf16) / 52 (int8) ms of CPU against fp32's 44: the
         * widening repeated for every four inputs and the sums bound by it (2026-12-07). */
#define WIDE_UNITS(a, b)                                                                       \
        for (int u = a; u < b; u++) {                                                          \
            int rr, s = seg_row(seg, rows * u, &rr);                                           \
            float wide[BLOCK_NR * K];                                                          \
            widen_rows(&seg[s], rr, rows, K, wide);                                            \
            block_dot_m(wide, K, x, ldx, y + seg[s].off + rr, ldy, add, M, 0);                 \
        }
        SHARE_UNITS(how, total / rows, steal_chunk((size_t)rows * K * 2), WIDE_UNITS);
#undef WIDE_UNITS
        SYNC(ph);
        return;
    }
    if (by) {
#define BLOCK_UNITS(a, b)                                                                      \
        for (int u = a; u < b; u++) {                                                          \
            int rr, s = seg_row(seg, rows * u, &rr);                                           \
            block_dot_m((const float *)seg[s].w + (size_t)rr * K, K, x, ldx,                   \
                        y + seg[s].off + rr, ldy, add, M, pf);                                 \
        }
        SHARE_UNITS(how, total / rows, steal_chunk((size_t)rows * K * 4), BLOCK_UNITS);
#undef BLOCK_UNITS
        SYNC(ph);
        return;
    }
#define ROW_UNITS(a, b)                                                                        \
    for (int r = a; r < b; r++) {                                                              \
        int rr, s = seg_row(seg, r, &rr);                                                      \
        if (wt == W_BF16)                                                                      \
            row_dot_bf16((const uint16_t *)seg[s].w + (size_t)rr * K, x, ldx, K, M,            \
                         y + seg[s].off + rr, ldy, add);                                       \
        else                                                                                   \
            row_dot((const float *)seg[s].w + (size_t)rr * K, x, ldx, K, M,                    \
                    y + seg[s].off + rr, ldy, add, pf);                                        \
    }
    SHARE_UNITS(how, total, steal_chunk((size_t)K * (wt == W_BF16 ? 2 : 4)), ROW_UNITS);
#undef ROW_UNITS
    SYNC(ph);
}

/* The bf16 product alone (kernel tests): y (M x R) = x (M x K) times the R bf16 rows of K at w;
 * amx: let 5 or more inputs run on AMX tiles where the CPU and Linux allow. One thread.
 * Returns 1 where the product ran on tiles. */
int lm_bf16_matvec(const void *w, int R, int K, const float *x, int M, float *y, int amx)
{
    segment s = seg_of(w, R, 0, R, K, W_BF16);
#ifdef AMX_BF16
    const int64_t before = amx_runs;
    matvec(&s, 1, x, K, K, M, y, R, 0, W_BF16, ISA_AUTO, P_HEAD,
           amx && amx_ready() ? MV_AMX : 0, NULL);
    return amx_runs > before;
#else
    (void)amx;
    matvec(&s, 1, x, K, K, M, y, R, 0, W_BF16, ISA_AUTO, P_HEAD, 0, NULL);
    return 0;
#endif
}

/* LlamaRMSNorm of M rows of D: out = w * x / sqrt(mean(x^2) + eps). */
static void rms_norm(const float *x, int ldx, const float *w, int D, int M, float eps,
                     float *out, int ldo)
{
    for (int j = 0; j < M; j++) {
        const float *r = x + (size_t)j * ldx;
        float *o = out + (size_t)j * ldo;
        v8 a = {0};
        int k = 0;
        for (; k + 8 <= D; k += 8) {
            v8 v = load8(r + k);
            a += v * v;
        }
        float ss = hsum8(a);
        for (; k < D; k++)
            ss += r[k] * r[k];
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (k = 0; k < D; k++)
            o[k] = w[k] * (r[k] * inv);
    }
}

/* RoPE in place on `heads` heads of Dh at position p: rotate_half with cos/sin of p * inv_freq
 * (times the attention scaling), as LlamaRotaryEmbedding and apply_rotary_pos_emb. */
static void rope(float *x, int heads, int Dh, const float *cs, const float *sn)
{
    int half = Dh / 2;
    for (int h = 0; h < heads; h++) {
        float *v = x + (size_t)h * Dh;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = b * cs[i] + a * sn[i];
        }
    }
}

static inline float dot(const float *a, const float *b, int n)
{
    v8 s0 = {0}, s1 = {0};
    int k = 0;
    for (; k + 16 <= n; k += 16) {
        s0 += load8(a + k) * load8(b + k);
        s1 += load8(a + k + 8) * load8(b + k + 8);
    }
    float s = hsum8(s0 + s1);
    for (; k < n; k++)
        s += a[k] * b[k];
    return s;
}

/* Scores of one query against keys k0 .. k0+3 (rows of Dh), four dot products side by side
 * (four independent sums instead of one dependent chain per key), into out[0..3]. */
static inline void dot4(const float *q, const float *k0, int Dh, float *out)
{
    const float *k1 = k0 + Dh, *k2 = k1 + Dh, *k3 = k2 + Dh;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int d = 0;
    for (; d + 8 <= Dh; d += 8) {
        v8 qv = load8(q + d);
        a0 += qv * load8(k0 + d);
        a1 += qv * load8(k1 + d);
        a2 += qv * load8(k2 + d);
        a3 += qv * load8(k3 + d);
    }
    hsum8x4(a0, a1, a2, a3, out);
    for (; d < Dh; d++) {
        out[0] += q[d] * k0[d];
        out[1] += q[d] * k1[d];
        out[2] += q[d] * k2[d];
        out[3] += q[d] * k3[d];
    }
}

/* o = sum over keys k of (p[k] * inv) * V[k] for Dh = 8 * ND, the output in ND registers
 * (the same sums, in the same order, as adding into o in memory key by key); keys with
 * p[k] == 0 (masked) are skipped. */
static inline __attribute__((always_inline)) void
weigh_values(const float *p, const float *V, int last, float inv, float *o, const int ND)
{
    v8 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < ND; i++)
        acc[i] = (v8){0};
    for (int k = 0; k <= last; k++) {
        if (p[k] == 0.0f)
            continue;
        const float *v = V + (size_t)k * 8 * ND;
        float w = p[k] * inv;
#pragma GCC unroll 16
        for (int i = 0; i < ND; i++)
            acc[i] += w * load8(v + 8 * i);
    }
#pragma GCC unroll 16
    for (int i = 0; i < ND; i++)
        memcpy(o + 8 * i, &acc[i], sizeof acc[i]);
}

/* silu(gate) * up for n <= 8 gate values at g (their up values I further on), into g */
static inline void silu_mul8(float *g, int I, int n)
{
    v8 gv = {0}, uv = {0};
    if (n == 8) {  /* (constant-size copies: inlined; a variable size calls memcpy) */
        gv = load8(g);
        uv = load8(g + I);
    } else {
        memcpy(&gv, g, sizeof(float) * n);
        memcpy(&uv, g + I, sizeof(float) * n);
    }
    v8 r = gv / (1.0f + exp8(-gv)) * uv;
    if (n == 8)
        memcpy(g, &r, sizeof r);
    else
        memcpy(g, &r, sizeof(float) * n);
}

/* Attention runs in chunks of keys: one task per (row, key/value head, chunk) takes every
 * query of the row and every query head that shares the key/value head, so the chunk's keys and
 * values are read from memory once per step and then from the caches, not once per (query,
 * head) from wherever they are; each task leaves per (query, head) the chunk's softmax max, sum
 * and weighted values, and a second loop merges the chunks (as flash-decoding does). Chunks of
 * m->att_chunk keys (the caller's), cut smaller when there would be fewer than two tasks per
 * thread, but never more chunks than one per ATT_CHUNK_MIN keys (the workspace's bound); if
 * that still leaves fewer, a group's query heads split between tasks. One chunk (short
 * contexts) writes the output itself: no merge, the arithmetic of one task per (query, head). */
enum { ATT_CHUNK_MIN = 64 };

/* Workspace floats one step needs: x, h (M x D), qkv (M x (H + 2 Hkv) Dh), attention output
 * (M x H Dh), gate/up (M x 2I), scores (M x H x T), per-chunk attention parts
 * (M x H x chunks x (Dh + 2)). */
int64_t lm_work_floats(const lm_model *m, int M, int T)
{
    int64_t qkv = (int64_t)(m->H + 2 * m->Hkv) * m->Dh;
    int64_t nc = (T + ATT_CHUNK_MIN - 1) / ATT_CHUNK_MIN;  /* the most chunks a step makes */
    return (int64_t)M * (2 * m->D + qkv + (int64_t)m->H * m->Dh + 2 * m->I + (int64_t)m->H * T
                         + (int64_t)m->H * nc * (m->Dh + 2));
}

/* The cache column input j (of rows of L) writes its key/value to and the last it sees: cols[j],
 * or n-L+i for the i-th input of its row (see lm_step). */
static inline int input_col(const int64_t *cols, int j, int n, int L)
{
    return cols ? (int)cols[j] : n - L + j % L;
}

/* One step: tokens (B, L) at positions pos (B, L) fill cache slots n-L .. n-1 of every layer's
 * k/v buffers (B, Hkv, T, Dh); mask (B, >= n, row stride mask_ld) of nonzero = attend, or NULL.
 * Query i of a row sees keys 0 .. n-L+i that its mask allows, and always itself (no row is all
 * masked). cols (M), or NULL: per input, the column it writes its key/value to and the last
 * column it sees, in place of n-L+i (rows of different lengths, as the server keeps them).
 * out: logits (R, Vh + Vx), or with want_hidden the final normed hidden states (R, D); R = B with
 * last_only (each row's last position), else B * L. Returns 0, or -1 for a token outside the
 * vocabulary, -2 for n outside [L, T] or a column outside [0, T). */
int lm_step(const lm_model *m, const int64_t *tok, const int64_t *pos, int B, int L, int n,
            const int64_t *mask, int64_t mask_ld, const int64_t *cols, float *const *kbuf,
            float *const *vbuf, int T,
            float *work, float *out, int last_only, int want_hidden, int nt)
{
    const int D = m->D, H = m->H, Hkv = m->Hkv, Dh = m->Dh, I = m->I, M = B * L;
    const int G = H / Hkv, QKV = (H + 2 * Hkv) * Dh, HD = H * Dh, half = Dh / 2;
    const int I8 = (I + 7) / 8;  /* SiLU in chunks of 8 */
    const int isa = lm_q8_isa(m->isa);
#ifdef AMX_BF16
    const int amx = m->amx && m->wtype == W_BF16 && M >= BLOCK_MIN && amx_ready() ? MV_AMX : 0;
#else
    const int amx = 0;
#endif
    if (n < L || n > T)
        return -2;
    for (int j = 0; cols && j < M; j++)
        if (cols[j] < 0 || cols[j] >= T)
            return -2;
    for (int j = 0; j < M; j++)
        if (tok[j] < 0 || tok[j] >= m->V)
            return -1;
    float *x = work, *h = x + (size_t)M * D, *qkv = h + (size_t)M * D;
    float *att = qkv + (size_t)M * QKV, *gu = att + (size_t)M * HD, *sc = gu + (size_t)M * 2 * I;
    /* key chunks: enough for the last column any input sees */
    int seen = 0;
    for (int j = 0; j < M; j++) {
        int last = input_col(cols, j, n, L);
        seen = last + 1 > seen ? last + 1 : seen;
    }
    int CS = m->att_chunk > ATT_CHUNK_MIN ? m->att_chunk : ATT_CHUNK_MIN;
    int NC = (seen + CS - 1) / CS, want = (2 * nt + B * Hkv - 1) / (B * Hkv);
    if (NC < want) {  /* two tasks a thread where the context allows */
        int most = (seen + ATT_CHUNK_MIN - 1) / ATT_CHUNK_MIN;
        NC = want < most ? want : most;
        CS = (seen + NC - 1) / NC;
        NC = (seen + CS - 1) / CS;
    }
    /* else the query heads of a group split between tasks (HP parts) */
    int HP = (2 * nt + B * Hkv * NC - 1) / (B * Hkv * NC);
    HP = HP < 1 ? 1 : HP > G ? G : HP;
    float *part = sc + (size_t)M * H * T;
    float cs[M][half > 0 ? half : 1], sn[M][half > 0 ? half : 1];

    PROF_BEGIN();
    for (int j = 0; j < M; j++) {
        memcpy(x + (size_t)j * D, m->embed + (size_t)tok[j] * D, sizeof(float) * D);
        for (int i = 0; i < half; i++) {
            float f = (float)pos[j] * m->inv_freq[i];
            cs[j][i] = cosf(f) * m->rope_scale;
            sn[j][i] = sinf(f) * m->rope_scale;
        }
    }
    /* the head's rows (an int8 head block holds all V rows' scales, of which the first Vh are
     * read) */
    segment s_h[2] = {seg_of(m->head, m->Vh, 0, m->V, D, m->wtype),
                      seg_of(m->head_x, m->Vx, m->Vh, m->Vx, D, m->wtype)};
    const int n_h = m->Vx > 0 ? 2 : 1;
    /* the rows whose logits (or hidden states) come out: each row's last, or every input */
    const int R = last_only ? B : M, step = last_only ? L : 1, first = last_only ? L - 1 : 0;
    /* one parallel region for all the layers and the head: loops split across the
     * threads (a barrier after each), the small serial parts on one thread; the norms on every
     * thread (each its own copy); with the one-input and int8 products, which split rows by
     * thread (own_rows), each thread's SiLU on its own gate/up rows, and each thread asks for
     * its first rows of the next product before the barrier ahead of it (prefetch_next).
     * Barriers a layer: 6 (7 with merged attention chunks); 9 (10) before 2026-12-07. */
    PROF_MARK(P_EMBED);
    /* every product's rows handed out in chunks (MV_STEAL) */
    const int steal = STEAL_ON ? MV_STEAL : 0;
    if (steal)
        steal_reset(nt);
#pragma omp parallel num_threads(nt)
    {
    PROF_BEGIN();
    PROF_REGION();
    const int wt = m->wtype, own = wt == W_I8 || M == 1;
    steal_product = 0;
    float *hn = own_floats((size_t)M * D);
    for (int l = 0; l < m->n_layers; l++) {
        const void *const *w = m->layer + (size_t)l * N_PER_LAYER;
        float *K = kbuf[l], *Vb = vbuf[l];
        segment s_qkv[3] = {seg_of(w[WQ], HD, 0, HD, D, wt),
                            seg_of(w[WK], Hkv * Dh, HD, Hkv * Dh, D, wt),
                            seg_of(w[WV], Hkv * Dh, HD + Hkv * Dh, Hkv * Dh, D, wt)};
        segment s_o = seg_of(w[WO], D, 0, D, HD, wt);
        segment s_gu[2] = {seg_of(w[WG], I, 0, I, D, wt), seg_of(w[WU], I, I, I, D, wt)};
        segment s_d = seg_of(w[WD], D, 0, D, I, wt);
        segment s_q1[3];  /* the next layer's q, k, v */
        mv_next nx_o = {&s_o, 1, HD, 0}, nx_gu = {s_gu, 2, D, MV_EACH}, nx_d = {&s_d, 1, I, 0};
        mv_next nx_l = {s_h, n_h, D, 0};  /* after the last layer: the head */
        if (l + 1 < m->n_layers) {
            const void *const *w1 = w + N_PER_LAYER;
            s_q1[0] = seg_of(w1[WQ], HD, 0, HD, D, wt);
            s_q1[1] = seg_of(w1[WK], Hkv * Dh, HD, Hkv * Dh, D, wt);
            s_q1[2] = seg_of(w1[WV], Hkv * Dh, HD + Hkv * Dh, Hkv * Dh, D, wt);
            nx_l = (mv_next){s_q1, 3, D, 0};
        }
        rms_norm(x, D, (const float *)w[LN1], D, M, m->eps, hn, D);
        PROF_MARK(P_NORM);
        matvec(s_qkv, 3, hn, D, D, M, qkv, QKV, 0, wt, isa, P_QKV, amx | steal,
               own ? &nx_o : NULL);
#pragma omp single nowait
        for (int j = 0; j < M; j++) {
            int b = j / L, slot = input_col(cols, j, n, L);
            float *q = qkv + (size_t)j * QKV;
            rope(q, H + Hkv, Dh, cs[j], sn[j]);
            for (int g = 0; g < Hkv; g++) {
                size_t at = (((size_t)b * Hkv + g) * T + slot) * Dh;
                memcpy(K + at, q + HD + (size_t)g * Dh, sizeof(float) * Dh);
                memcpy(Vb + at, q + HD + (size_t)(Hkv + g) * Dh, sizeof(float) * Dh);
            }
        }
        SYNC(P_ROPE);
        /* attention in chunks of keys (see ATT_CHUNK_MIN): each chunk's part ... */
#pragma omp for schedule(static) nowait
        for (int t = 0; t < B * Hkv * NC * HP; t++) {
            int b = t / (Hkv * NC * HP), g = t / (NC * HP) % Hkv, c0 = t / HP % NC * CS;
            int h_lo = g * G + G * (t % HP) / HP, h_hi = g * G + G * (t % HP + 1) / HP;
            const float *Kr = K + ((size_t)b * Hkv + g) * T * Dh;
            const float *Vr = Vb + ((size_t)b * Hkv + g) * T * Dh;
            const int64_t *mk = mask ? mask + (size_t)b * mask_ld : NULL;
            for (int j = b * L; j < (b + 1) * L; j++) {
                int last = input_col(cols, j, n, L);
                int end = last < c0 + CS - 1 ? last : c0 + CS - 1;
                for (int hd = h_lo; hd < h_hi; hd++) {
                    /* one chunk: the output itself, normed here (no merge) */
                    float *st = NC == 1 ? NULL
                              : part + ((size_t)(j * H + hd) * NC + c0 / CS) * (Dh + 2);
                    float *o = st ? st + 2 : att + (size_t)j * HD + (size_t)hd * Dh;
                    float *s = sc + (size_t)(j * H + hd) * T, mx = -INFINITY;
                    const float *q = qkv + (size_t)j * QKV + (size_t)hd * Dh;
                    if (st) {
                        st[0] = -INFINITY;  /* the chunk's max score and sum: none yet */
                        st[1] = 0.0f;
                    }
                    if (c0 > last)
                        continue;
                    int k = c0;
                    if (!mk)  /* four keys at a time */
                        for (; k + 4 <= end + 1; k += 4) {
                            dot4(q, Kr + (size_t)k * Dh, Dh, s + k);
                            for (int i = 0; i < 4; i++) {
                                s[k + i] *= m->scale;
                                mx = s[k + i] > mx ? s[k + i] : mx;
                            }
                        }
                    for (; k <= end; k++) {
                        if (mk && !mk[k] && k != last) {
                            s[k] = -INFINITY;
                            continue;
                        }
                        s[k] = dot(q, Kr + (size_t)k * Dh, Dh) * m->scale;
                        if (s[k] > mx)
                            mx = s[k];
                    }
                    if (mx == -INFINITY)  /* every key of the chunk masked */
                        continue;
                    k = c0;
                    v8 acc = {0};
                    for (; k + 8 <= end + 1; k += 8) {
                        v8 v = load8(s + k), e = exp8(v - mx);
                        for (int i = 0; i < 8; i++)
                            e[i] = v[i] == -INFINITY ? 0.0f : e[i];
                        memcpy(s + k, &e, sizeof e);
                        acc += e;
                    }
                    float sum = hsum8(acc);
                    if (k <= end) {
                        float keep[8];
                        memcpy(keep, s + k, sizeof(float) * (end + 1 - k));
                        exp_tail(s + k, end + 1 - k, mx);
                        for (; k <= end; k++) {
                            s[k] = keep[(k - c0) & 7] == -INFINITY ? 0.0f : s[k];
                            sum += s[k];
                        }
                    }
                    float inv = 1.0f;  /* a chunk's values weighed by exp(score - max), unnormed */
                    if (st) {
                        st[0] = mx;
                        st[1] = sum;
                    } else {
                        inv = 1.0f / sum;
                    }
                    const float *p = s + c0, *Vc = Vr + (size_t)c0 * Dh;
                    int e = end - c0;
                    switch (Dh) {  /* the common head sizes with the sums in registers */
                    case 16: weigh_values(p, Vc, e, inv, o, 2); break;
                    case 32: weigh_values(p, Vc, e, inv, o, 4); break;
                    case 64: weigh_values(p, Vc, e, inv, o, 8); break;
                    case 128: weigh_values(p, Vc, e, inv, o, 16); break;
                    default:
                        for (int d = 0; d < Dh; d++)
                            o[d] = 0.0f;
                        for (int kk = 0; kk <= e; kk++) {
                            if (p[kk] == 0.0f)
                                continue;
                            const float *v = Vc + (size_t)kk * Dh;
                            float w = p[kk] * inv;
                            for (int d = 0; d < Dh; d++)
                                o[d] += w * v[d];
                        }
                    }
                }
            }
        }
        SYNC(P_ATT);
        /* ... merged per (input, head): out = sum_c e^(max_c - max) o_c / sum_c e^(max_c - max)
         * sum_c over the chunks that saw a key */
        if (NC > 1) {
#pragma omp for schedule(static) nowait
            for (int t = 0; t < M * H; t++) {
                const float *st = part + (size_t)t * NC * (Dh + 2);
                float mx = -INFINITY, sum = 0.0f, *o = att + (size_t)t * Dh;
                for (int c = 0; c < NC; c++)
                    mx = st[c * (Dh + 2)] > mx ? st[c * (Dh + 2)] : mx;
                for (int d = 0; d < Dh; d++)
                    o[d] = 0.0f;
                for (int c = 0; c < NC; c++) {
                    const float *sc_ = st + (size_t)c * (Dh + 2);
                    if (sc_[1] == 0.0f)
                        continue;
                    float f = expf(sc_[0] - mx);
                    sum += f * sc_[1];
                    for (int d = 0; d < Dh; d++)
                        o[d] += f * sc_[2 + d];
                }
                float inv = 1.0f / sum;
                for (int d = 0; d < Dh; d++)
                    o[d] *= inv;
            }
            SYNC(P_MERGE);
        }
        matvec(&s_o, 1, att, HD, HD, M, x, D, 1, wt, isa, P_O, amx | steal,
               own ? &nx_gu : NULL);
        rms_norm(x, D, (const float *)w[LN2], D, M, m->eps, hn, D);
        PROF_MARK(P_NORM);
        if (own) {  /* gate and up rows by chunk (or each thread's share), then their SiLU */
            matvec(s_gu, 2, hn, D, D, M, gu, 2 * I, 0, wt, isa, P_GU,
                   MV_EACH | MV_NOSYNC | MV_SILU | steal, &nx_d);
        } else {
            matvec(s_gu, 2, hn, D, D, M, gu, 2 * I, 0, wt, isa, P_GU, amx | steal, NULL);
#pragma omp for schedule(static) nowait
            for (int c = 0; c < M * I8; c++) {
                int j = c / I8, i = c % I8 * 8;
                silu_mul8(gu + (size_t)j * 2 * I + i, I, I - i < 8 ? I - i : 8);
            }
        }
        SYNC(P_SILU);
        matvec(&s_d, 1, gu, 2 * I, I, M, x, D, 1, wt, isa, P_DOWN, amx | steal,
               own && !want_hidden ? &nx_l : NULL);
    }
    /* the final norm over the rows asked for (every thread its own copy), then the head, in
     * the same region (a second one had cost a fork and a join a token); the region's end
     * is the head's barrier */
    if (!want_hidden) {
        rms_norm(x + (size_t)first * D, step * D, m->norm, D, R, m->eps, hn, D);
        PROF_MARK(P_FNORM);
        matvec(s_h, n_h, hn, D, D, R, out, m->Vh + m->Vx, 0, wt, isa, P_HEAD,
               MV_NOSYNC | amx | steal, NULL);
    }
    }
    PROF_MARK(P_WAIT);  /* the region's end */
    if (want_hidden)  /* the final norm over the rows asked for */
        rms_norm(x + (size_t)first * D, step * D, m->norm, D, R, m->eps, out, D);
    PROF_STEP();
    return 0;
}

/* The first index of the largest of x[0 .. n-1], a NaN counting as largest (numpy's and
 * torch's argmax): in plain C, and (below) in vectors. */
static int64_t argmax_scalar(const float *x, int n)
{
    int64_t best = 0;
    float b = x[0];
    if (b != b)
        return 0;
    for (int i = 1; i < n; i++) {
        if (x[i] != x[i])
            return i;
        if (x[i] > b) {
            b = x[i];
            best = i;
        }
    }
    return best;
}

/* argmax_scalar's answer in two vector passes: the largest value (a NaN anywhere: the scalar
 * loop decides), then the first index holding a value equal to it (the first the scalar loop
 * keeps: later equal values, +0 after -0 included, are not larger). A head's 49,152 logits had
 * taken ~40 us of a token in the scalar loop (2 threads, 2026-12-07). */
static int64_t argmax_f32(const float *x, int n)
{
#ifdef __AVX2__
    if (n >= 8) {
        __m256 mx = _mm256_loadu_ps(x), un = _mm256_cmp_ps(mx, mx, _CMP_UNORD_Q);
        int i = 8;
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            un = _mm256_or_ps(un, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            mx = _mm256_max_ps(mx, v);
        }
        if (_mm256_movemask_ps(un))
            return argmax_scalar(x, n);
        float m[8], top;
        _mm256_storeu_ps(m, mx);
        top = m[0];
        for (int k = 1; k < 8; k++)
            top = m[k] > top ? m[k] : top;
        for (; i < n; i++) {
            if (x[i] != x[i])
                return argmax_scalar(x, n);
            top = x[i] > top ? x[i] : top;
        }
        const __m256 t = _mm256_set1_ps(top);
        for (i = 0; i + 8 <= n; i += 8) {
            int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_EQ_OQ));
            if (hit)
                return i + __builtin_ctz((unsigned)hit);
        }
        for (; i < n; i++)
            if (x[i] == top)
                return i;
    }
#endif
    return argmax_scalar(x, n);
}

/* argmax_f32 alone (tests) */
int64_t lm_argmax(const float *x, int n)
{
    return argmax_f32(x, n);
}

/* Greedy decoding of one row with no padding, `steps` tokens at most, without returning to the
 * caller between tokens: token `tok` at position `pos` fills cache slot n-1; each step's logits
 * (the whole head) go to logits + i * (Vh + Vx), its argmax to out[i] and is the next step's
 * token (position + 1, slot + 1); with a head over part of the vocabulary (Vh first rows, then
 * Vx others) xid[0 .. Vx-1] are the token ids of the other rows (an argmax j >= Vh is token
 * xid[j - Vh]; a speculative draft's k proposals in one call). Stops after a token in
 * stop[0 .. n_stop-1]. Returns the number of tokens written, or lm_step's negative code.
 * (Python between one-token steps had cost ~0.45 ms of a ~10 ms step, its code and data cold
 * after the step streamed the weights through the caches, measured 2026-12-05.) */
int lm_greedy(const lm_model *m, int64_t tok, int64_t pos, int n, int steps,
              const int64_t *stop, int n_stop, const int64_t *xid, float *const *kbuf,
              float *const *vbuf, int T,
              float *work, float *logits, int64_t *out, int nt)
{
    const int W = m->Vh + m->Vx;
    for (int i = 0; i < steps; i++) {
        float *row = logits + (size_t)i * W;
        int rc = lm_step(m, &tok, &pos, 1, 1, n, NULL, 0, NULL, kbuf, vbuf, T, work, row, 1, 0,
                         nt);
        if (rc != 0)
            return rc;
        tok = argmax_f32(row, W);
        if (tok >= m->Vh)
            tok = xid[tok - m->Vh];
        PROF_MARK(P_ARGMAX);
        out[i] = tok;
        pos++;
        n++;
        for (int s = 0; s < n_stop; s++)
            if (stop[s] == tok)
                return i + 1;
    }
    return steps;
}

/* The memory read bandwidth probe (lmlab.hardware.read_bandwidth): the sum of x[0 .. n-1],
 * n a multiple of 32, read as the decode step reads its weights: nt threads, each over its
 * own contiguous share, four independent vector sums each. The sum is returned so that the
 * reads cannot be left out. */
double lm_read(const float *x, int64_t n, int nt)
{
    double total = 0;
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t blocks = n / 32, a = blocks * t / T * 32, e = blocks * (t + 1) / T * 32;
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        for (int64_t i = a; i < e; i += 32) {
            s0 += load8(x + i);
            s1 += load8(x + i + 8);
            s2 += load8(x + i + 16);
            s3 += load8(x + i + 24);
        }
        for (int k = 0; k < 8; k++)  /* (in double: exact for counts of ones below 2^24) */
            total += ((double)s0[k] + (double)s1[k]) + ((double)s2[k] + (double)s3[k]);
    }
    return total;
}
