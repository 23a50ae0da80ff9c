/* Vector primitives shared by the native kernels (stack.c: inference, recurrence.c: training): AVX2 + FMA.
 *
 * A "lanes" buffer holds LANES floats per entry, lane q belonging to row q of a tile of LANES rows.
 */
#ifndef DRNN_LANES_H
#define DRNN_LANES_H
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8
typedef __m256 v8;

/* Gate blocks of a cell (codes as numba_kernels.CELL_CODES: 0 vanilla, 1 LSTM, 2 GRU). */
static inline int gate_count(int64_t cell) { return cell == 0 ? 1 : (cell == 1 ? 4 : 3); }

static inline v8 tanh8(v8 x) {
    /* Eigen's rational approximation of tanh on [-7.9053, 7.9053] (|error| < 3e-7); beyond, +-1. min and
     * max return their second operand when either is NaN: x second, so NaN passes through. */
    const v8 bound = _mm256_set1_ps(7.90531110763549805f);
    x = _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), bound), _mm256_min_ps(bound, x));
    v8 x2 = _mm256_mul_ps(x, x);
    v8 p = _mm256_set1_ps(-2.76076847742355e-16f);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.00018790482477e-13f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-8.60467152213735e-11f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(5.12229709037114e-08f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(1.48572235717979e-05f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(6.37261928875436e-04f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(4.89352455891786e-03f));
    v8 q = _mm256_set1_ps(1.19825839466702e-06f);
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.18534705686654e-04f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(2.26843463243900e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(4.89352518554385e-03f));
    return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

static inline v8 sigmoid8(v8 x) {
    const v8 half = _mm256_set1_ps(0.5f);
    return _mm256_fmadd_ps(half, tanh8(_mm256_mul_ps(half, x)), half);
}

/* NU units of gate sums from unit j for the tile: NU accumulators in registers for the whole sum, over
 * two inputs in turn (K1 values of in1 against w's first K1 rows, then K2 of in2 against the next K2),
 * starting from the biases b1 + b2 (either may be absent) plus, if given, the lanes of acc. */
#define LANE_BLOCK(NU)                                                                                      \
    static inline void lane_block_##NU(float *g, const float *in1, int K1, const float *in2, int K2,       \
                                       const float *w, int GH, const float *b1, const float *b2,           \
                                       const float *acc, int j) {                                          \
        v8 a[NU];                                                                                           \
        for (int u = 0; u < NU; u++) a[u] = _mm256_set1_ps((b1 ? b1[j + u] : 0.0f) + (b2 ? b2[j + u] : 0.0f)); \
        if (acc)                                                                                            \
            for (int u = 0; u < NU; u++) a[u] = _mm256_add_ps(a[u], _mm256_loadu_ps(acc + (j + u) * LANES)); \
        const float *wk = w + j;                                                                            \
        for (int k = 0; k < K1; k++, wk += GH) {                                                            \
            v8 x = _mm256_loadu_ps(in1 + k * LANES);                                                        \
            for (int u = 0; u < NU; u++) a[u] = _mm256_fmadd_ps(_mm256_set1_ps(wk[u]), x, a[u]);            \
        }                                                                                                   \
        for (int k = 0; k < K2; k++, wk += GH) {                                                            \
            v8 x = _mm256_loadu_ps(in2 + k * LANES);                                                        \
            for (int u = 0; u < NU; u++) a[u] = _mm256_fmadd_ps(_mm256_set1_ps(wk[u]), x, a[u]);            \
        }                                                                                                   \
        for (int u = 0; u < NU; u++) _mm256_storeu_ps(g + (j + u) * LANES, a[u]);                          \
    }
LANE_BLOCK(8) LANE_BLOCK(4) LANE_BLOCK(1)

/* g[j] = b1[j] + b2[j] + acc[j] + sum_k w[k, j] * (in1 ++ in2)[k] for j < GH (w row-major [K1 + K2, GH]; in2,
 * b1, b2 and acc may be absent; acc may be g), every value a vector of lanes: eight units at a time, then
 * four, then one. */
static inline void lane_sums(float *g, const float *in1, int K1, const float *in2, int K2, const float *w, int GH,
                             const float *b1, const float *b2, const float *acc) {
    int j = 0;
    for (; j + 8 <= GH; j += 8) lane_block_8(g, in1, K1, in2, K2, w, GH, b1, b2, acc, j);
    for (; j + 4 <= GH; j += 4) lane_block_4(g, in1, K1, in2, K2, w, GH, b1, b2, acc, j);
    for (; j < GH; j++) lane_block_1(g, in1, K1, in2, K2, w, GH, b1, b2, acc, j);
}

/* lane_sums without acc. */
static inline void gates(float *g, const float *in1, int K1, const float *in2, int K2, const float *w, int GH,
                         const float *b1, const float *b2) {
    lane_sums(g, in1, K1, in2, K2, w, GH, b1, b2, NULL);
}

#define V(p, j) _mm256_loadu_ps((p) + (j) * LANES)

/* The body of an exported kernel: `units` (tiles or rows) split over up to `threads` OpenMP threads as
 * contiguous parts [first, end), each running `call` (an expression of first and end, 0 on success);
 * one part runs on the calling thread. Returns 0, or -1 if any part failed (memory ran out).
 *
 * OpenMP, not a pool of our own: the process has one libgomp, PyTorch's, so the kernels run on its
 * threads, where another pool's would compete with them (PyTorch's spin for a while after each of its
 * operations, as training interleaves them with ours). */
#define OVER_PARTS(units, threads, call)                                                                  \
    int64_t units_ = (units), parts_ = (threads) < units_ ? (threads) : units_;                         \
    int failed = 0;                                                                                       \
    if (parts_ <= 1) {                                                                                    \
        int64_t first = 0, end = units_;                                                                  \
        failed = units_ > 0 && (call) != 0;                                                               \
    } else {                                                                                              \
        _Pragma("omp parallel num_threads(parts_) reduction(|: failed)") {                                \
            int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();                           \
            int64_t first = units_ * part / parts, end = units_ * (part + 1) / parts;                     \
            if (first < end) failed |= (call) != 0;                                                       \
        }                                                                                                 \
    }                                                                                                     \
    return failed ? -1 : 0;

/* Lanes [0, n) of a vector on, the rest off: masked loads read zeros there and masked stores skip them. */
static inline __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* r[0..7] transposed in place: lane u of r[q] becomes lane q of r[u]. */
static inline void transpose8(v8 *r) {
    v8 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    v8 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    v8 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    v8 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    v8 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    v8 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    v8 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    v8 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* lanes[j] (lane q) = src[q * stride + j] for j < cols, rows q < rows of a tile; lanes of absent rows are 0. */
static inline void rows_to_lanes(float *lanes, const float *src, int64_t stride, int rows, int cols) {
    for (int j = 0; j < cols; j += LANES) {
        int nj = cols - j < LANES ? cols - j : LANES;
        __m256i m = first_lanes(nj);
        v8 r[LANES];
        if (rows == LANES && nj == LANES)
            for (int q = 0; q < LANES; q++) r[q] = _mm256_loadu_ps(src + q * stride + j);
        else
            for (int q = 0; q < LANES; q++)
                r[q] = q >= rows ? _mm256_setzero_ps()
                                 : nj == LANES ? _mm256_loadu_ps(src + q * stride + j)
                                               : _mm256_maskload_ps(src + q * stride + j, m);
        transpose8(r);
        float *to = lanes + j * LANES;
        switch (nj) { /* constant indices keep r in registers (a loop to nj made it a memcpy through memory) */
            case 8: _mm256_storeu_ps(to + 7 * LANES, r[7]); /* fall through */
            case 7: _mm256_storeu_ps(to + 6 * LANES, r[6]); /* fall through */
            case 6: _mm256_storeu_ps(to + 5 * LANES, r[5]); /* fall through */
            case 5: _mm256_storeu_ps(to + 4 * LANES, r[4]); /* fall through */
            case 4: _mm256_storeu_ps(to + 3 * LANES, r[3]); /* fall through */
            case 3: _mm256_storeu_ps(to + 2 * LANES, r[2]); /* fall through */
            case 2: _mm256_storeu_ps(to + 1 * LANES, r[1]); /* fall through */
            default: _mm256_storeu_ps(to, r[0]);
        }
    }
}

/* dst[q * stride + j] = lanes[j] (lane q) for j < cols, rows q < rows: rows_to_lanes' inverse. */
static inline void lanes_to_rows(float *dst, int64_t stride, int rows, const float *lanes, int cols) {
    for (int j = 0; j < cols; j += LANES) {
        int nj = cols - j < LANES ? cols - j : LANES;
        __m256i m = first_lanes(nj);
        v8 r[LANES];
        for (int u = 0; u < LANES; u++) r[u] = u < nj ? _mm256_loadu_ps(lanes + (j + u) * LANES) : _mm256_setzero_ps();
        transpose8(r);
        if (rows == LANES && nj == LANES) /* constant counts: r stays in registers */
            for (int q = 0; q < LANES; q++) _mm256_storeu_ps(dst + q * stride + j, r[q]);
        else
            for (int q = 0; q < rows; q++) {
                if (nj == LANES) _mm256_storeu_ps(dst + q * stride + j, r[q]);
                else _mm256_maskstore_ps(dst + q * stride + j, m, r[q]);
            }
    }
}

#endif
