/* The pruned stack's inference with the batch in the vector lanes (AVX2 + FMA), and streaming: see native.py.
 *
 * Eight rows (a tile) advance together: every state, gate and input value is an 8-float vector
 * whose lane q belongs to row q of the tile, so each weight is broadcast once against eight rows'
 * values. Gate pre-activations are computed up to eight units at a time in accumulators that stay in
 * registers over the whole sum (the register-blocked micro-kernel, `gates`); activations vectorise
 * over the rows. A vanilla or LSTM cell's sums run over input and state in one pass (`step`). The
 * arithmetic is that of numba_kernels.py: the same equations, PyTorch's gate order, the same rational
 * tanh (sums in another order). Weights and plan arrays are those stack.pack_weights and
 * stack.pack_plan make.
 *
 * A single row (batch-1 latency) has no lanes to fill: drnn_stack without lanes runs rows one at a time
 * with the vectors across units instead, up to eight vectors of gate sums held in registers (`row_gates`);
 * so does drnn_stream, which advances streaming's shift registers over a chunk.
 */
#include "lanes.h"

/* One step of a cell for the tile: h (and an LSTM's c) in place. A GRU's gate sums come in two parts,
 * gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh; a vanilla or LSTM cell's come whole in gi (gh unused). */
static void cell_update(int cell, int H, const float *gi, const float *gh, float *h, float *c) {
    for (int j = 0; j < H; j++) {
        v8 out;
        if (cell == 0) {
            out = tanh8(V(gi, j));
        } else if (cell == 1) {
            v8 i = sigmoid8(V(gi, j));
            v8 f = sigmoid8(V(gi, H + j));
            v8 g = tanh8(V(gi, 2 * H + j));
            v8 o = sigmoid8(V(gi, 3 * H + j));
            v8 cj = _mm256_fmadd_ps(f, V(c, j), _mm256_mul_ps(i, g));
            _mm256_storeu_ps(c + j * LANES, cj);
            out = _mm256_mul_ps(o, tanh8(cj));
        } else {
            v8 r = sigmoid8(_mm256_add_ps(V(gi, j), V(gh, j)));
            v8 z = sigmoid8(_mm256_add_ps(V(gi, H + j), V(gh, H + j)));
            v8 n = tanh8(_mm256_fmadd_ps(r, V(gh, 2 * H + j), V(gi, 2 * H + j)));
            out = _mm256_fmadd_ps(z, _mm256_sub_ps(V(h, j), n), n);
        }
        _mm256_storeu_ps(h + j * LANES, out);
    }
}

/* NV vectors of gate sums of one row from unit j, the last vector's lanes chosen by `last`: NV accumulators
 * in registers over the whole sum, two inputs in turn as in LANE_BLOCK. */
#define ROW_BLOCK(NV)                                                                                      \
    static inline void row_block_##NV(float *g, const float *in1, int K1, const float *in2, int K2,       \
                                      const float *w, int GH, const float *b1, const float *b2, int j,    \
                                      __m256i last) {                                                     \
        v8 a[NV];                                                                                          \
        for (int u = 0; u < NV - 1; u++) a[u] = _mm256_loadu_ps(b1 + j + 8 * u);                          \
        a[NV - 1] = _mm256_maskload_ps(b1 + j + 8 * (NV - 1), last);                                       \
        if (b2) {                                                                                          \
            for (int u = 0; u < NV - 1; u++) a[u] = _mm256_add_ps(a[u], _mm256_loadu_ps(b2 + j + 8 * u));  \
            a[NV - 1] = _mm256_add_ps(a[NV - 1], _mm256_maskload_ps(b2 + j + 8 * (NV - 1), last));         \
        }                                                                                                  \
        const float *wk = w + j;                                                                           \
        for (int part = 0; part < 2; part++) {                                                             \
            const float *in = part ? in2 : in1;                                                            \
            for (int k = 0, K = part ? K2 : K1; k < K; k++, wk += GH) {                                    \
                v8 x = _mm256_set1_ps(in[k]);                                                              \
                for (int u = 0; u < NV - 1; u++) a[u] = _mm256_fmadd_ps(x, _mm256_loadu_ps(wk + 8 * u), a[u]); \
                a[NV - 1] = _mm256_fmadd_ps(x, _mm256_maskload_ps(wk + 8 * (NV - 1), last), a[NV - 1]);     \
            }                                                                                              \
        }                                                                                                  \
        for (int u = 0; u < NV - 1; u++) _mm256_storeu_ps(g + j + 8 * u, a[u]);                           \
        _mm256_maskstore_ps(g + j + 8 * (NV - 1), last, a[NV - 1]);                                        \
    }
ROW_BLOCK(1) ROW_BLOCK(2) ROW_BLOCK(3) ROW_BLOCK(4) ROW_BLOCK(5) ROW_BLOCK(6) ROW_BLOCK(7) ROW_BLOCK(8)

/* As `gates`, for one row: vectors across units j, up to eight at a time. */
static void row_gates(float *g, const float *in1, int K1, const float *in2, int K2, const float *w, int GH,
                      const float *b1, const float *b2) {
    for (int j = 0; j < GH;) {
        int left = (GH - j + 7) / 8, nv = left / ((left + 7) / 8);  /* blocks of at most 8, balanced */
        __m256i last = first_lanes(GH - j - 8 * (nv - 1));
#define ARGS g, in1, K1, in2, K2, w, GH, b1, b2, j, last
        switch (nv) {
            case 1: row_block_1(ARGS); break;
            case 2: row_block_2(ARGS); break;
            case 3: row_block_3(ARGS); break;
            case 4: row_block_4(ARGS); break;
            case 5: row_block_5(ARGS); break;
            case 6: row_block_6(ARGS); break;
            case 7: row_block_7(ARGS); break;
            default: row_block_8(ARGS); break;
        }
#undef ARGS
        j += 8 * nv;
    }
}

/* One step of a cell for one row, vectors across units (the last one masked); gi and gh as cell_update's. */
static void row_update(int cell, int H, const float *gi, const float *gh, float *h, float *c) {
    for (int j = 0; j < H; j += 8) {
        __m256i m = first_lanes(H - j);
#define L(p, off) _mm256_maskload_ps((p) + (off) + j, m)
        v8 out;
        if (cell == 0) {
            out = tanh8(L(gi, 0));
        } else if (cell == 1) {
            v8 i = sigmoid8(L(gi, 0));
            v8 f = sigmoid8(L(gi, H));
            v8 g = tanh8(L(gi, 2 * H));
            v8 o = sigmoid8(L(gi, 3 * H));
            v8 cj = _mm256_fmadd_ps(f, L(c, 0), _mm256_mul_ps(i, g));
            _mm256_maskstore_ps(c + j, m, cj);
            out = _mm256_mul_ps(o, tanh8(cj));
        } else {
            v8 r = sigmoid8(_mm256_add_ps(L(gi, 0), L(gh, 0)));
            v8 z = sigmoid8(_mm256_add_ps(L(gi, H), L(gh, H)));
            v8 n = tanh8(_mm256_fmadd_ps(r, L(gh, 2 * H), L(gi, 2 * H)));
            out = _mm256_fmadd_ps(z, _mm256_sub_ps(L(h, 0), n), n);
        }
#undef L
        _mm256_maskstore_ps(h + j, m, out);
    }
}

/* One step of a layer for W rows (W = LANES: a tile, values interleaved by lane; W = 1: one row): the state
 * h (and an LSTM's c) in place from the input `in`. A vanilla or LSTM cell sums input and state in one pass
 * (W_hh^T follows W_ih^T in the packed weights); a GRU needs the two parts apart (its n gate scales the
 * state's by r). gi and gh: scratch of G * H * W floats. */
static inline void step(int W, int cell, int F, int H, const float *in, float *h, float *c, const float *w_ih,
                        const float *b_ih, const float *b_hh, float *gi, float *gh) {
    int G = gate_count(cell), GH = G * H;
    const float *w_hh = w_ih + (int64_t)F * GH;
    void (*sums)(float *, const float *, int, const float *, int, const float *, int, const float *,
                 const float *) = W == 1 ? row_gates : gates;
    void (*update)(int, int, const float *, const float *, float *, float *) = W == 1 ? row_update : cell_update;
    if (cell == 2) {
        sums(gi, in, F, NULL, 0, w_ih, GH, b_ih, NULL);
        sums(gh, h, H, NULL, 0, w_hh, GH, b_hh, NULL);
    } else {
        sums(gi, in, F, h, H, w_ih, GH, b_ih, b_hh);
    }
    update(cell, H, gi, gh, h, c);
}

/* Units [unit0, unit1) of x [B, T, F0] through the stack, W rows per unit: W = LANES, a tile in the vector
 * lanes (gates, cell_update); W = 1, one row with vectors across units (row_gates, row_update). Every
 * buffer holds W values per entry. Arguments as drnn_stack's. */
static int run_stack(const float *x, int64_t B, int64_t T, int64_t F0, const float *weights, int64_t cell,
                     int64_t L, const int64_t *sizes, const int64_t *gather, const int64_t *readout,
                     int64_t n_readout, int64_t read_layers, float *out, int64_t W, int64_t unit0, int64_t unit1) {
    int G = gate_count(cell);
    int64_t longest = T * F0, widest = 0, deepest = 0, width = 0, first_read = L - read_layers;
    for (int64_t l = 0; l < L; l++) {
        if (l >= first_read) width += sizes[4 * l + 1];
        int64_t rows = sizes[4 * l + 1] * sizes[4 * l + 2] * sizes[4 * l + 3];
        if (rows > longest) longest = rows;
        if (G * sizes[4 * l + 1] > widest) widest = G * sizes[4 * l + 1];
        if (sizes[4 * l] > deepest) deepest = sizes[4 * l];
    }
    float *buf = aligned_alloc(32, sizeof(float) * LANES * (2 * longest + 4 * widest + deepest) + 32);
    if (!buf) return -1;
    float *below = buf, *above = below + longest * W, *gi = above + longest * W;
    float *gh = gi + widest * W, *h = gh + widest * W, *c = h + widest * W, *zero = c + widest * W;
    memset(zero, 0, sizeof(float) * W * deepest);
    for (int64_t unit = unit0; unit < unit1; unit++) {
        int64_t first = unit * W, rows = B - first < W ? B - first : W;
        memset(below, 0, sizeof(float) * W * T * F0);
        for (int64_t q = 0; q < rows; q++)
            for (int64_t p = 0; p < T * F0; p++) below[p * W + q] = x[(first + q) * T * F0 + p];
        int64_t rows_below = T, w_off = 0, g_off = 0, out_off = 0;
        float *lo = below, *hi = above;
        for (int64_t l = 0; l < L; l++) {
            int F = (int)sizes[4 * l], H = (int)sizes[4 * l + 1];
            int64_t R = sizes[4 * l + 2], n = sizes[4 * l + 3];
            int GH = G * H;
            const float *w_ih = weights + w_off, *w_hh = w_ih + (int64_t)F * GH;
            const float *b_ih = w_hh + (int64_t)H * GH, *b_hh = b_ih + GH;
            w_off += (int64_t)(F + H + 2) * GH;
            for (int64_t r = 0; r < R; r++) {
                memset(h, 0, sizeof(float) * W * H);
                memset(c, 0, sizeof(float) * W * H);
                for (int64_t k = 0; k < n; k++) {
                    int64_t p = r * n + k, src = gather[g_off + p];
                    const float *in = src < rows_below ? lo + src * F * W : zero;
                    step((int)W, (int)cell, F, H, in, h, c, w_ih, b_ih, b_hh, gi, gh);
                    memcpy(hi + p * H * W, h, sizeof(float) * W * H);
                }
            }
            if (l >= first_read) { /* this layer's outputs at the readout's steps, beside the layers read below */
                const int64_t *rows_l = readout + (l - first_read) * n_readout;
                for (int64_t q = 0; q < rows; q++)
                    for (int64_t i = 0; i < n_readout; i++)
                        for (int64_t j = 0; j < H; j++)
                            out[((first + q) * n_readout + i) * width + out_off + j] = hi[(rows_l[i] * H + j) * W + q];
                out_off += H;
            }
            g_off += R * n;
            rows_below = R * n;
            float *t = lo; lo = hi; hi = t;
        }
    }
    free(buf);
    return 0;
}

/* x [B, T, F0] through the stack; out [B, n_readout, sum of H over the layers read]. sizes [L, 4] = (F, H, R, n)
 * per layer; gather: the rows of the layer below each layer's steps read, chain by chain (a row >= the rows
 * below is a padded step: zero input); readout [read_layers, n_readout]: the rows of the requested steps in
 * each of the top read_layers layers (1: the top layer alone; L: every layer, concatenated bottom first).
 * lanes: tiles of LANES rows (the last one padded), else one row at a time. Split over `threads` threads.
 * Returns 0, or -1 if memory ran out. */
int drnn_stack(const float *x, int64_t B, int64_t T, int64_t F0, const float *weights, int64_t cell, int64_t L,
               const int64_t *sizes, const int64_t *gather, const int64_t *readout, int64_t n_readout,
               int64_t read_layers, float *out, int64_t lanes, int64_t threads) {
    int64_t W = lanes ? LANES : 1;
    OVER_PARTS((B + W - 1) / W, threads,
               run_stack(x, B, T, F0, weights, cell, L, sizes, gather, readout, n_readout, read_layers, out, W,
                         first, end))
}

/* Streaming (streaming.py; drnn_stream below): rows [row0, row1) of a chunk x [B, n, F0] from their shift
 * registers `in` [B, M] to `next` [B, M] (a different buffer). sizes [L, 3] = (F, H, d) per layer. What is
 * read at each step: the top layer's output [H_top], or with `read_layers` every layer's, concatenated bottom first
 * [R = sum of H]. Writes, each if its pointer is not NULL: what is read, out [B, n, R]; a linear head's logits
 * at each step, logits [B, n, K] = head_b + head_w [K, R] applied to it; each row's position,
 * pos_next = pos + n.
 *
 * A layer's register holds its last d states, oldest first (an LSTM's entry: h then c). Step k of the
 * chunk reads the state of step k - d, and its new state lands in `next` at slot (k + r) mod d,
 * r = (d - n mod d) mod d: the entry it holds once the chunk is done, or the slot of step k + d, which
 * reads it and overwrites it in place. Entries of steps before the chunk that stay (n < d) are copied
 * to their new place first; every other value of `in` is read once, at its step. */
static int stream_rows(const float *x, int64_t n, int64_t F0, const float *weights, int64_t cell, int64_t L,
                       const int64_t *sizes, const float *in, float *next, int64_t M, float *out, const float *head_w,
                       const float *head_b, int64_t K, float *logits, const int64_t *pos, int64_t *pos_next,
                       int64_t read_layers, int64_t row0, int64_t row1) {
    int G = gate_count(cell), pair = cell == 1 ? 2 : 1;
    int64_t widest = 0, R = 0;
    for (int64_t l = 0; l < L; l++) {
        if (G * sizes[3 * l + 1] > widest) widest = G * sizes[3 * l + 1];
        R += sizes[3 * l + 1];
    }
    if (!read_layers) R = sizes[3 * (L - 1) + 1];
    float *buf = aligned_alloc(32, sizeof(float) * (2 * widest + R + 8) + 32);
    if (!buf) return -1;
    float *gi = buf, *gh = gi + widest, *layers = gh + widest; /* every layer's output at this step */
    for (int64_t b = row0; b < row1; b++) {
        const float *old = in + b * M;
        float *reg = next + b * M;
        int64_t s_off = 0;
        for (int64_t l = 0; l < L; l++) { /* the entries of steps before the chunk that stay */
            int64_t d = sizes[3 * l + 2], S = pair * sizes[3 * l + 1];
            if (n < d) memcpy(reg + s_off, old + s_off + n * S, sizeof(float) * (d - n) * S);
            s_off += d * S;
        }
        for (int64_t k = 0; k < n; k++) {
            const float *below = x + (b * n + k) * F0;
            int64_t w_off = 0, r_off = 0;
            s_off = 0;
            for (int64_t l = 0; l < L; l++) {
                int F = (int)sizes[3 * l], H = (int)sizes[3 * l + 1];
                int64_t d = sizes[3 * l + 2], S = pair * H, r = (d - n % d) % d;
                int GH = G * H;
                const float *w_ih = weights + w_off, *w_hh = w_ih + (int64_t)F * GH;
                const float *b_ih = w_hh + (int64_t)H * GH, *b_hh = b_ih + GH;
                w_off += (int64_t)(F + H + 2) * GH;
                float *h = reg + s_off + ((k + r) % d) * S;
                if (k < d) memcpy(h, old + s_off + k * S, sizeof(float) * S); /* the state of step k - d */
                step(1, (int)cell, F, H, below, h, h + H, w_ih, b_ih, b_hh, gi, gh);
                if (read_layers) memcpy(layers + r_off, h, sizeof(float) * H);
                r_off += H;
                below = h;
                s_off += d * S;
            }
            const float *read = read_layers ? layers : below;
            if (out) memcpy(out + (b * n + k) * R, read, sizeof(float) * R);
            for (int64_t j = 0; j < K; j++) {
                float sum = head_b[j];
                for (int64_t i = 0; i < R; i++) sum += head_w[j * R + i] * read[i];
                logits[(b * n + k) * K + j] = sum;
            }
        }
        if (pos_next) pos_next[b] = pos[b] + n;
    }
    free(buf);
    return 0;
}

/* Streaming over all B rows of the chunk, split over `threads` threads (arguments as stream_rows'). */
int drnn_stream(const float *x, int64_t B, int64_t n, int64_t F0, const float *weights, int64_t cell, int64_t L,
                const int64_t *sizes, const float *in, float *next, int64_t M, float *out, const float *head_w,
                const float *head_b, int64_t K, float *logits, const int64_t *pos, int64_t *pos_next,
                int64_t read_layers, int64_t threads) {
    OVER_PARTS(B, threads, stream_rows(x, n, F0, weights, cell, L, sizes, in, next, M, out, head_w, head_b, K,
                                       logits, pos, pos_next, read_layers, first, end))
}
