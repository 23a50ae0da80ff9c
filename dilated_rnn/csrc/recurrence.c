/* Training's recurrences with the batch in the vector lanes (AVX2 + FMA): see kernels.py's _Recurrence.
 *
 * One layer's recurrence over N chains of n steps, forward (keeping what the backward pass needs) and
 * backward through time, eight chains (a tile) at a time: the state's gate sums are register-blocked
 * lane accumulators (`gates`), activations and their derivatives vectorise over the chains. The
 * arithmetic is kernels.py's Numba recurrences': the same equations, PyTorch's gate order, the same
 * rational tanh (sums in another order).
 *
 * Rows stay in PyTorch's layout, [N, n, .] row-major: a step's values of a tile's eight chains are read
 * and written through 8 x 8 transposes (rows_to_lanes, lanes_to_rows). What passes from the forward to
 * the backward pass, `aux`, is private and kept in lanes: [tiles, n, A * H, LANES] with, per step and
 * unit, A values: vanilla h; LSTM i, f, g, o, c, tanh(c); GRU r, z, n, (h W_hn^T + b_hn), h.
 *
 * start [N]: chain i begins from a zero state at step start[i]; its earlier steps are padding, with zero
 * outputs and no gradient (their lanes are computed and then masked to zero).
 *
 * Tiles are split over `threads` OpenMP threads: training calls these between PyTorch's own OpenMP
 * operations, and sharing its runtime (one libgomp in the process) means sharing its threads, where
 * threads of another pool would compete with PyTorch's, which spin for a while after each operation.
 */
#include <omp.h>

#include "lanes.h"

static inline int gate_count(int64_t cell) { return cell == 0 ? 1 : (cell == 1 ? 4 : 3); }

/* Values per unit and step in aux. */
static inline int aux_count(int64_t cell) { return cell == 0 ? 1 : (cell == 1 ? 6 : 5); }

/* The starts of a tile's rows as int32 lanes (absent rows start at 0: computed, never written). */
static inline __m256i tile_starts(const int64_t *start, int64_t first, int rows) {
    int32_t s[LANES];
    for (int q = 0; q < LANES; q++) s[q] = q < rows ? (int32_t)start[first + q] : 0;
    return _mm256_loadu_si256((const __m256i *)s);
}

/* Lanes whose row has not begun at step t (all bits set there). */
static inline v8 padding(__m256i starts, int64_t t) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(starts, _mm256_set1_epi32((int32_t)t)));
}

#define ZERO_WHERE(pad, v) _mm256_andnot_ps((pad), (v))
#define ONE _mm256_set1_ps(1.0f)

/* Tiles [tile0, tile1) of drnn_recurrence_forward. */
static int forward_tiles(const float *gx, int64_t N, int64_t n, int64_t H, int64_t cell, const float *w_hh_t,
                         const float *b_hh, const int64_t *start, float *hs, float *aux, int64_t tile0,
                         int64_t tile1) {
    int G = gate_count(cell), GH = G * (int)H, A = aux_count(cell);
    float *buf = aligned_alloc(32, sizeof(float) * LANES * (2 * GH + 2 * H) + 32);
    if (!buf) return -1;
    float *gi = buf, *gh = gi + GH * LANES, *h = gh + GH * LANES, *c = h + H * LANES;
    for (int64_t tile = tile0; tile < tile1; tile++) {
        int64_t first = tile * LANES;
        int rows = N - first < LANES ? (int)(N - first) : LANES;
        __m256i starts = tile_starts(start, first, rows);
        memset(h, 0, sizeof(float) * LANES * H);
        memset(c, 0, sizeof(float) * LANES * H);
        for (int64_t t = 0; t < n; t++) {
            v8 pad = padding(starts, t);
            float *a = aux + (tile * n + t) * A * H * LANES;
            rows_to_lanes(gi, gx + (first * n + t) * GH, n * GH, rows, GH);
            if (cell == 2) gates(gh, h, (int)H, NULL, 0, w_hh_t, GH, b_hh, NULL);
            else gates_onto(gi, h, (int)H, w_hh_t, GH, b_hh);
            for (int64_t j = 0; j < H; j++) {
                v8 out;
                if (cell == 0) {
                    out = ZERO_WHERE(pad, tanh8(V(gi, j)));
                    _mm256_storeu_ps(a + j * LANES, out);
                } else if (cell == 1) {
                    v8 i = sigmoid8(V(gi, j)), f = sigmoid8(V(gi, H + j));
                    v8 g = tanh8(V(gi, 2 * H + j)), o = sigmoid8(V(gi, 3 * H + j));
                    v8 cj = ZERO_WHERE(pad, _mm256_fmadd_ps(f, V(c, j), _mm256_mul_ps(i, g)));
                    v8 tc = tanh8(cj);
                    out = _mm256_mul_ps(o, tc);
                    _mm256_storeu_ps(c + j * LANES, cj);
                    v8 keep[6] = {i, f, g, o, cj, tc};
                    for (int k = 0; k < 6; k++) _mm256_storeu_ps(a + (k * H + j) * LANES, keep[k]);
                } else {
                    v8 r = sigmoid8(_mm256_add_ps(V(gi, j), V(gh, j)));
                    v8 z = sigmoid8(_mm256_add_ps(V(gi, H + j), V(gh, H + j)));
                    v8 ghn = V(gh, 2 * H + j);
                    v8 nn = tanh8(_mm256_fmadd_ps(r, ghn, V(gi, 2 * H + j)));
                    out = ZERO_WHERE(pad, _mm256_fmadd_ps(z, _mm256_sub_ps(V(h, j), nn), nn));
                    v8 keep[5] = {r, z, nn, ghn, out};
                    for (int k = 0; k < 5; k++) _mm256_storeu_ps(a + (k * H + j) * LANES, keep[k]);
                }
                _mm256_storeu_ps(h + j * LANES, out);
            }
            lanes_to_rows(hs + (first * n + t) * H, n * H, rows, h, (int)H);
        }
    }
    free(buf);
    return 0;
}

/* Tiles [tile0, tile1) of drnn_recurrence_backward. */
static int backward_tiles(const float *dout, int64_t N, int64_t n, int64_t H, int64_t cell, const float *w_hh,
                          const float *aux, const int64_t *start, float *dgx, float *dgh, int64_t tile0,
                          int64_t tile1) {
    int G = gate_count(cell), GH = G * (int)H, A = aux_count(cell);
    float *buf = aligned_alloc(32, sizeof(float) * LANES * (2 * GH + 3 * H) + 32);
    if (!buf) return -1;
    float *dg = buf, *dg2 = dg + GH * LANES, *dl = dg2 + GH * LANES, *dh = dl + H * LANES, *dc = dh + H * LANES;
    const v8 zero = _mm256_setzero_ps();
    for (int64_t tile = tile0; tile < tile1; tile++) {
        int64_t first = tile * LANES;
        int rows = N - first < LANES ? (int)(N - first) : LANES;
        __m256i starts = tile_starts(start, first, rows);
        memset(dh, 0, sizeof(float) * LANES * H);
        memset(dc, 0, sizeof(float) * LANES * H);
        for (int64_t t = n - 1; t >= 0; t--) {
            v8 pad = padding(starts, t);
            const float *a = aux + (tile * n + t) * A * H * LANES, *prev = t > 0 ? a - A * H * LANES : NULL;
            rows_to_lanes(dl, dout + (first * n + t) * H, n * H, rows, (int)H);
            for (int64_t j = 0; j < H; j++) {
                v8 d = _mm256_add_ps(V(dl, j), V(dh, j));
                if (cell == 0) {
                    v8 h = V(a, j);
                    _mm256_storeu_ps(dg + j * LANES, ZERO_WHERE(pad, _mm256_mul_ps(d, _mm256_fnmadd_ps(h, h, ONE))));
                } else if (cell == 1) {
                    v8 i = V(a, j), f = V(a, H + j), g = V(a, 2 * H + j), o = V(a, 3 * H + j), tc = V(a, 5 * H + j);
                    v8 c_prev = prev ? V(prev, 4 * H + j) : zero;
                    v8 dct = _mm256_fmadd_ps(_mm256_mul_ps(d, o), _mm256_fnmadd_ps(tc, tc, ONE), V(dc, j));
                    v8 di = _mm256_mul_ps(_mm256_mul_ps(dct, g), _mm256_mul_ps(i, _mm256_sub_ps(ONE, i)));
                    v8 df = _mm256_mul_ps(_mm256_mul_ps(dct, c_prev), _mm256_mul_ps(f, _mm256_sub_ps(ONE, f)));
                    v8 dgg = _mm256_mul_ps(_mm256_mul_ps(dct, i), _mm256_fnmadd_ps(g, g, ONE));
                    v8 do_ = _mm256_mul_ps(_mm256_mul_ps(d, tc), _mm256_mul_ps(o, _mm256_sub_ps(ONE, o)));
                    _mm256_storeu_ps(dg + j * LANES, ZERO_WHERE(pad, di));
                    _mm256_storeu_ps(dg + (H + j) * LANES, ZERO_WHERE(pad, df));
                    _mm256_storeu_ps(dg + (2 * H + j) * LANES, ZERO_WHERE(pad, dgg));
                    _mm256_storeu_ps(dg + (3 * H + j) * LANES, ZERO_WHERE(pad, do_));
                    _mm256_storeu_ps(dc + j * LANES, _mm256_mul_ps(dct, f));
                } else {
                    v8 r = V(a, j), z = V(a, H + j), nn = V(a, 2 * H + j), ghn = V(a, 3 * H + j);
                    v8 h_prev = prev ? V(prev, 4 * H + j) : zero;
                    v8 dn = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_sub_ps(ONE, z)), _mm256_fnmadd_ps(nn, nn, ONE));
                    v8 dr = _mm256_mul_ps(_mm256_mul_ps(dn, ghn), _mm256_mul_ps(r, _mm256_sub_ps(ONE, r)));
                    v8 dz = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_sub_ps(h_prev, nn)),
                                          _mm256_mul_ps(z, _mm256_sub_ps(ONE, z)));
                    dr = ZERO_WHERE(pad, dr), dz = ZERO_WHERE(pad, dz);
                    _mm256_storeu_ps(dg + j * LANES, dr);
                    _mm256_storeu_ps(dg + (H + j) * LANES, dz);
                    _mm256_storeu_ps(dg + (2 * H + j) * LANES, ZERO_WHERE(pad, dn));
                    _mm256_storeu_ps(dg2 + j * LANES, dr);
                    _mm256_storeu_ps(dg2 + (H + j) * LANES, dz);
                    _mm256_storeu_ps(dg2 + (2 * H + j) * LANES, ZERO_WHERE(pad, _mm256_mul_ps(dn, r)));
                    _mm256_storeu_ps(dh + j * LANES, _mm256_mul_ps(d, z)); /* the direct path; the rest below */
                }
            }
            if (cell == 2) gates_onto(dh, dg2, GH, w_hh, (int)H, NULL); /* dh = d z + dgh W_hh */
            else gates(dh, dg, GH, NULL, 0, w_hh, (int)H, NULL, NULL);  /* dh = dg W_hh */
            lanes_to_rows(dgx + (first * n + t) * GH, n * GH, rows, dg, GH);
            if (cell == 2) lanes_to_rows(dgh + (first * n + t) * GH, n * GH, rows, dg2, GH);
        }
    }
    free(buf);
    return 0;
}

/* The tiles of N rows, split over `threads` threads as contiguous parts: each runs `call` (an expression
 * using tile0 and tile1); any failure fails the whole. */
#define OVER_TILES(N, threads, call)                                                     \
    int64_t tiles = ((N) + LANES - 1) / LANES;                                          \
    int failed = 0;                                                                       \
    _Pragma("omp parallel num_threads(threads) reduction(|: failed)") {                 \
        int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();              \
        int64_t tile0 = tiles * part / parts, tile1 = tiles * (part + 1) / parts;        \
        if (tile0 < tile1) failed |= (call) != 0;                                        \
    }                                                                                     \
    return failed ? -1 : 0;

/* gx [N, n, G * H] (the input's gate sums, x W_ih^T + b_ih) through the layer: hs [N, n, H] the outputs,
 * aux as above. w_hh_t [H, G * H] is W_hh transposed, b_hh [G * H]. Returns 0, or -1 if memory ran out. */
int drnn_recurrence_forward(const float *gx, int64_t N, int64_t n, int64_t H, int64_t cell, const float *w_hh_t,
                            const float *b_hh, const int64_t *start, float *hs, float *aux, int64_t threads) {
    OVER_TILES(N, threads, forward_tiles(gx, N, n, H, cell, w_hh_t, b_hh, start, hs, aux, tile0, tile1))
}

/* The backward pass through time: from dout [N, n, H] (the loss's gradient with respect to hs) and aux,
 * the gradient with respect to the gate sums: dgx [N, n, G * H] for gx, and for a GRU dgh [N, n, G * H]
 * for h W_hh^T + b_hh (a vanilla or LSTM cell's equals dgx: dgh unused). w_hh [G * H, H] is W_hh as
 * PyTorch keeps it. Returns 0, or -1 if memory ran out. */
int drnn_recurrence_backward(const float *dout, int64_t N, int64_t n, int64_t H, int64_t cell, const float *w_hh,
                             const float *aux, const int64_t *start, float *dgx, float *dgh, int64_t threads) {
    OVER_TILES(N, threads, backward_tiles(dout, N, n, H, cell, w_hh, aux, start, dgx, dgh, tile0, tile1))
}
