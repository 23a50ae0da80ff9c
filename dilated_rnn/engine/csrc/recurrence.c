/* Training's recurrences with the batch in the vector lanes (AVX2 + FMA): see recurrence.py's Recurrence.
 *
 * One layer's recurrence over N chains of n steps, forward (keeping what the backward pass needs) and
 * backward through time, eight chains (a tile) at a time: the gate sums are register-blocked lane
 * accumulators (`gates`, `lane_sums`), activations and their derivatives vectorise over the chains. The
 * arithmetic is numba_kernels.py's recurrences': the same equations, PyTorch's gate order, the same
 * rational tanh (sums in another order).
 *
 * The input enters in one of two forms. F > 0: the layer's input x [N, n, F] itself, its projection
 * x W_ih^T summed in the kernel (with the state's, in one pass, for a vanilla or LSTM cell), and the
 * backward pass accumulates W_ih's gradient and x's: for a narrow input (a pixel, a few channels), where
 * a separate matrix product would mostly move memory. F = 0: gx [N, n, G * H] = x W_ih^T, a matrix
 * product the caller made. Both ways the biases are added here and their gradients summed here.
 *
 * Rows stay in PyTorch's layout, [N, n, .] row-major: a step's values of a tile's eight chains are read
 * and written through 8 x 8 transposes (rows_to_lanes, lanes_to_rows). What passes from the forward to
 * the backward pass, `aux`, is private and kept in lanes: [tiles, n, A * H, LANES] with, per step and
 * unit, A values: vanilla h; LSTM i, f, g, o, c, tanh(c); GRU r, z, n, (h W_hn^T + b_hn), h.
 *
 * start [N]: chain i begins from a zero state at step start[i]; its earlier steps are padding, with zero
 * outputs and no gradient (their lanes are computed and then masked to zero).
 *
 * Tiles are split over `threads` OpenMP threads (OVER_PARTS).
 */
#include "lanes.h"

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
static int forward_tiles(const float *in, int64_t N, int64_t n, int64_t F, int64_t H, int64_t cell,
                         const float *w_t, const float *b_ih, const float *b_hh, const int64_t *start, float *hs,
                         float *aux, int64_t tile0, int64_t tile1) {
    int G = gate_count(cell), GH = G * (int)H, A = aux_count(cell);
    const float *w_hh_t = w_t + F * GH;
    float *buf = aligned_alloc(32, sizeof(float) * LANES * (2 * GH + 2 * H + F) + 32);
    if (!buf) return -1;
    float *gi = buf, *gh = gi + GH * LANES, *h = gh + GH * LANES, *c = h + H * LANES, *xl = c + H * LANES;
    for (int64_t tile = tile0; tile < tile1; tile++) {
        int64_t first = tile * LANES;
        int rows = N - first < LANES ? (int)(N - first) : LANES;
        __m256i starts = tile_starts(start, first, rows);
        memset(h, 0, sizeof(float) * LANES * H);
        memset(c, 0, sizeof(float) * LANES * H);
        for (int64_t t = 0; t < n; t++) {
            v8 pad = padding(starts, t);
            float *a = aux + (tile * n + t) * A * H * LANES;
            if (F > 0) { /* gi from x: with the state's sums in one pass, but a GRU's */
                rows_to_lanes(xl, in + (first * n + t) * F, n * F, rows, (int)F);
                if (cell == 2) gates(gi, xl, (int)F, NULL, 0, w_t, GH, b_ih, NULL);
                else gates(gi, xl, (int)F, h, (int)H, w_t, GH, b_ih, b_hh);
            } else { /* gi from gx, plus the biases (a GRU's b_ih only) and the state's sums (not a GRU's) */
                rows_to_lanes(gi, in + (first * n + t) * GH, n * GH, rows, GH);
                if (cell == 2) lane_sums(gi, NULL, 0, NULL, 0, w_hh_t, GH, b_ih, NULL, gi);
                else lane_sums(gi, h, (int)H, NULL, 0, w_hh_t, GH, b_ih, b_hh, gi);
            }
            if (cell == 2) gates(gh, h, (int)H, NULL, 0, w_hh_t, GH, b_hh, NULL);
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
static int backward_tiles(const float *dout, int64_t N, int64_t n, int64_t F, int64_t H, int64_t cell,
                          const float *x, const float *w_ih, const float *w_hh, const float *aux,
                          const int64_t *start, float *dgx, float *dgh, float *dx, float *sums, float *dw_ih,
                          int64_t tile0, int64_t tile1) {
    int G = gate_count(cell), GH = G * (int)H, A = aux_count(cell);
    float *buf = aligned_alloc(32, sizeof(float) * LANES * (2 * GH + 3 * H + 2 * F) + 32);
    if (!buf) return -1;
    float *dg = buf, *dg2 = dg + GH * LANES, *dl = dg2 + GH * LANES, *dh = dl + H * LANES, *dc = dh + H * LANES;
    float *xl = dc + H * LANES, *dxl = xl + F * LANES;
    const v8 zero = _mm256_setzero_ps();
    for (int64_t tile = tile0; tile < tile1; tile++) {
        int64_t first = tile * LANES;
        int rows = N - first < LANES ? (int)(N - first) : LANES;
        __m256i starts = tile_starts(start, first, rows);
        float *sum_x = sums + tile * 2 * GH * LANES, *sum_h = sum_x + GH * LANES;
        float *dw = F > 0 ? dw_ih + tile * F * GH * LANES : NULL;
        memset(sum_x, 0, sizeof(float) * 2 * GH * LANES);
        if (dw) memset(dw, 0, sizeof(float) * F * GH * LANES);
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
            const float *dgs = cell == 2 ? dg2 : dg; /* the state's gate gradients */
            if (cell == 2) lane_sums(dh, dgs, GH, NULL, 0, w_hh, (int)H, NULL, NULL, dh); /* dh = d z + dgh W_hh */
            else gates(dh, dgs, GH, NULL, 0, w_hh, (int)H, NULL, NULL);                    /* dh = dg W_hh */
            for (int j = 0; j < GH; j++) /* the biases' gradients, per lane (the same two but for a GRU) */
                _mm256_storeu_ps(sum_x + j * LANES, _mm256_add_ps(V(sum_x, j), V(dg, j)));
            if (cell == 2)
                for (int j = 0; j < GH; j++) _mm256_storeu_ps(sum_h + j * LANES, _mm256_add_ps(V(sum_h, j), V(dgs, j)));
            if (F > 0) { /* W_ih's gradient, and x's if wanted: from x itself */
                rows_to_lanes(xl, x + (first * n + t) * F, n * F, rows, (int)F);
                for (int64_t k = 0; k < F; k++) {
                    v8 xk = V(xl, k);
                    float *dwk = dw + k * GH * LANES;
                    for (int j = 0; j < GH; j++) _mm256_storeu_ps(dwk + j * LANES, _mm256_fmadd_ps(xk, V(dg, j), V(dwk, j)));
                }
                if (dx) {
                    gates(dxl, dg, GH, NULL, 0, w_ih, (int)F, NULL, NULL); /* dx = dgx W_ih */
                    lanes_to_rows(dx + (first * n + t) * F, n * F, rows, dxl, (int)F);
                }
            }
            lanes_to_rows(dgx + (first * n + t) * GH, n * GH, rows, dg, GH);
            if (cell == 2) lanes_to_rows(dgh + (first * n + t) * GH, n * GH, rows, dg2, GH);
        }
    }
    free(buf);
    return 0;
}

/* The layer's forward pass: hs [N, n, H] the outputs, aux as above. F > 0: in is x [N, n, F] and w_t
 * [F + H, G * H] holds W_ih^T then W_hh^T; F = 0: in is gx [N, n, G * H] = x W_ih^T and w_t is W_hh^T.
 * b_ih, b_hh [G * H]. Returns 0, or -1 if memory ran out. */
int drnn_recurrence_forward(const float *in, int64_t N, int64_t n, int64_t F, int64_t H, int64_t cell,
                            const float *w_t, const float *b_ih, const float *b_hh, const int64_t *start, float *hs,
                            float *aux, int64_t threads) {
    OVER_PARTS((N + LANES - 1) / LANES, threads,
               forward_tiles(in, N, n, F, H, cell, w_t, b_ih, b_hh, start, hs, aux, first, end))
}

/* The backward pass through time, from dout [N, n, H] (the loss's gradient with respect to hs) and aux:
 * - dgx, dgh [N, n, G * H]: the gradients with respect to the input's gate sums (x W_ih^T + b_ih) and
 *   the state's (h W_hh^T + b_hh); a vanilla or LSTM cell's are equal and dgh is not written;
 * - sums [tiles, 2, G * H, LANES]: per tile and lane, dgx's and (a GRU's) dgh's sums over steps: the biases'
 *   gradients;
 * - F > 0 (x [N, n, F] the forward pass's input): dw_ih [tiles, F, G * H, LANES] likewise for W_ih's
 *   gradient, and if dx is not NULL, x's gradient dx [N, n, F] (w_ih [G * H, F] is W_ih as PyTorch keeps it).
 * w_hh [G * H, H] is W_hh as PyTorch keeps it. Returns 0, or -1 if memory ran out. */
int drnn_recurrence_backward(const float *dout, int64_t N, int64_t n, int64_t F, int64_t H, int64_t cell,
                             const float *x, const float *w_ih, const float *w_hh, const float *aux,
                             const int64_t *start, float *dgx, float *dgh, float *dx, float *sums, float *dw_ih,
                             int64_t threads) {
    OVER_PARTS((N + LANES - 1) / LANES, threads, backward_tiles(dout, N, n, F, H, cell, x, w_ih, w_hh, aux, start,
                                                                dgx, dgh, dx, sums, dw_ih, first, end))
}
