/* fleche._transpose: the C-order copy of a strided array, tiled so a transpose runs in the cache.
 *
 * A canonical digest hashes an array's bytes in C order, so a Fortran-order
 * array (or a transposed view) is copied in C order, a slab of rows at a time,
 * before it is hashed. numpy's copy moves such an array one element at a
 * time; this copy walks strips of a few dozen source columns down the slab,
 * in blocks of 4 x 4 or 8 x 8 items transposed in vector registers (1-, 2-,
 * 4- and 8-byte items on x86-64; others an item at a time), and asks for the
 * source lines a little ahead, so the many short runs of a slab stream in from
 * memory instead of missing one by one.
 *
 * Only the CPython C API and the buffer protocol: no numpy headers, so gcc and
 * Python's headers build it. fleche works without it (a slower numpy path).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DIMS 64
#define STRIP_BYTES 512 /* destination bytes of a strip's row: 64 columns of float64 */
#define PREFETCH 128    /* bytes down each source column requested ahead */
#define PREFETCH_EVERY 32 /* bytes down the columns between two requests */
/* Of strips of 128 to 4,096 bytes and prefetches 0 to 1,024 bytes ahead, these
 * measured fastest on 100 MB float64 arrays of 1,250 and 10,000 rows (without
 * the prefetch, the copy took twice as long: benchmarks/bench_digest.py). A
 * request every 32 bytes (every band of float64 or float32, every fourth of
 * bytes) measured best of 8 to 64 over 1-, 4-, 8- and 16-byte items. */

typedef struct {
    int ndim;
    Py_ssize_t shape[MAX_DIMS];
    Py_ssize_t src[MAX_DIMS]; /* source strides, bytes */
    Py_ssize_t dst[MAX_DIMS]; /* destination strides, bytes (C order) */
} Layout;

typedef struct { uint64_t lo, hi; } Item16;

typedef void (*StripKernel)(const char *, Py_ssize_t, Py_ssize_t, char *, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t);

/* One strip, an item at a time: rows 0..rows-1 of columns 0..cols-1 into destination rows. */
#define STRIP_KERNEL(NAME, TYPE)                                                            \
    static void NAME(const char *src, Py_ssize_t s_row, Py_ssize_t s_col, char *dst,       \
                     Py_ssize_t d_row, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t size) \
    {                                                                                       \
        Py_ssize_t ahead = s_row * (PREFETCH / size > 0 ? PREFETCH / size : 1);            \
        for (Py_ssize_t i = 0; i < rows; i++) {                                             \
            const char *from = src + i * s_row;                                             \
            char *to = dst + i * d_row;                                                     \
            for (Py_ssize_t j = 0; j < cols; j++) {                                         \
                if ((i & 3) == 0) {                                                         \
                    __builtin_prefetch(from + j * s_col + ahead);                           \
                }                                                                           \
                memcpy(to + j * (Py_ssize_t)sizeof(TYPE), from + j * s_col, sizeof(TYPE)); \
            }                                                                               \
        }                                                                                   \
    }

STRIP_KERNEL(items_1, uint8_t)
STRIP_KERNEL(items_2, uint16_t)
STRIP_KERNEL(items_4, uint32_t)
STRIP_KERNEL(items_8, uint64_t)
STRIP_KERNEL(strip_16, Item16)

static void strip_any(const char *src, Py_ssize_t s_row, Py_ssize_t s_col, char *dst,
                      Py_ssize_t d_row, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t size)
{
    for (Py_ssize_t i = 0; i < rows; i++) {
        for (Py_ssize_t j = 0; j < cols; j++) {
            memcpy(dst + i * d_row + j * size, src + i * s_row + j * s_col, (size_t)size);
        }
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define VECTOR_KERNELS 1
static int has_avx2;

/* Four rows of four 8-byte items from four source columns, transposed in registers. */
__attribute__((target("avx2"))) static inline void
block_8(const char *c, Py_ssize_t s_col, char *r, Py_ssize_t d_row)
{
    __m256i c0 = _mm256_loadu_si256((const __m256i *)c);
    __m256i c1 = _mm256_loadu_si256((const __m256i *)(c + s_col));
    __m256i c2 = _mm256_loadu_si256((const __m256i *)(c + 2 * s_col));
    __m256i c3 = _mm256_loadu_si256((const __m256i *)(c + 3 * s_col));
    __m256i t0 = _mm256_unpacklo_epi64(c0, c1), t1 = _mm256_unpackhi_epi64(c0, c1);
    __m256i t2 = _mm256_unpacklo_epi64(c2, c3), t3 = _mm256_unpackhi_epi64(c2, c3);
    _mm256_storeu_si256((__m256i *)r, _mm256_permute2x128_si256(t0, t2, 0x20));
    _mm256_storeu_si256((__m256i *)(r + d_row), _mm256_permute2x128_si256(t1, t3, 0x20));
    _mm256_storeu_si256((__m256i *)(r + 2 * d_row), _mm256_permute2x128_si256(t0, t2, 0x31));
    _mm256_storeu_si256((__m256i *)(r + 3 * d_row), _mm256_permute2x128_si256(t1, t3, 0x31));
}

/* Four rows of four 4-byte items (SSE2, always there on x86-64). */
static inline void block_4(const char *c, Py_ssize_t s_col, char *r, Py_ssize_t d_row)
{
    __m128i c0 = _mm_loadu_si128((const __m128i *)c);
    __m128i c1 = _mm_loadu_si128((const __m128i *)(c + s_col));
    __m128i c2 = _mm_loadu_si128((const __m128i *)(c + 2 * s_col));
    __m128i c3 = _mm_loadu_si128((const __m128i *)(c + 3 * s_col));
    __m128i t0 = _mm_unpacklo_epi32(c0, c1), t1 = _mm_unpackhi_epi32(c0, c1);
    __m128i t2 = _mm_unpacklo_epi32(c2, c3), t3 = _mm_unpackhi_epi32(c2, c3);
    _mm_storeu_si128((__m128i *)r, _mm_unpacklo_epi64(t0, t2));
    _mm_storeu_si128((__m128i *)(r + d_row), _mm_unpackhi_epi64(t0, t2));
    _mm_storeu_si128((__m128i *)(r + 2 * d_row), _mm_unpacklo_epi64(t1, t3));
    _mm_storeu_si128((__m128i *)(r + 3 * d_row), _mm_unpackhi_epi64(t1, t3));
}

/* Eight rows of eight 2-byte items from eight source columns (SSE2). */
static inline void block_2(const char *c, Py_ssize_t s_col, char *r, Py_ssize_t d_row)
{
    __m128i a[8], b[8];
    for (int k = 0; k < 8; k += 2) {
        __m128i even = _mm_loadu_si128((const __m128i *)(c + k * s_col));
        __m128i odd = _mm_loadu_si128((const __m128i *)(c + (k + 1) * s_col));
        a[k] = _mm_unpacklo_epi16(even, odd); /* rows 0-3 of columns k, k + 1 */
        a[k + 1] = _mm_unpackhi_epi16(even, odd); /* rows 4-7 */
    }
    for (int h = 0; h < 8; h += 4) { /* columns 0-3, then 4-7: two rows in each b */
        b[h] = _mm_unpacklo_epi32(a[h], a[h + 2]);
        b[h + 1] = _mm_unpackhi_epi32(a[h], a[h + 2]);
        b[h + 2] = _mm_unpacklo_epi32(a[h + 1], a[h + 3]);
        b[h + 3] = _mm_unpackhi_epi32(a[h + 1], a[h + 3]);
    }
    for (int k = 0; k < 4; k++) {
        _mm_storeu_si128((__m128i *)(r + 2 * k * d_row), _mm_unpacklo_epi64(b[k], b[k + 4]));
        _mm_storeu_si128((__m128i *)(r + (2 * k + 1) * d_row), _mm_unpackhi_epi64(b[k], b[k + 4]));
    }
}

/* Eight rows of eight 1-byte items from eight source columns (SSE2). */
static inline void block_1(const char *c, Py_ssize_t s_col, char *r, Py_ssize_t d_row)
{
    __m128i a[4], b[4];
    for (int k = 0; k < 4; k++) { /* rows 0-7 of columns 2k, 2k + 1 */
        a[k] = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(c + 2 * k * s_col)),
                                 _mm_loadl_epi64((const __m128i *)(c + (2 * k + 1) * s_col)));
    }
    b[0] = _mm_unpacklo_epi16(a[0], a[1]); /* rows 0-3 of columns 0-3 */
    b[1] = _mm_unpackhi_epi16(a[0], a[1]); /* rows 4-7 of columns 0-3 */
    b[2] = _mm_unpacklo_epi16(a[2], a[3]);
    b[3] = _mm_unpackhi_epi16(a[2], a[3]);
    for (int k = 0; k < 2; k++) {
        __m128i low = _mm_unpacklo_epi32(b[k], b[k + 2]); /* rows 4k, 4k + 1 */
        __m128i high = _mm_unpackhi_epi32(b[k], b[k + 2]); /* rows 4k + 2, 4k + 3 */
        char *row = r + 4 * k * d_row;
        _mm_storel_epi64((__m128i *)row, low);
        _mm_storel_epi64((__m128i *)(row + d_row), _mm_unpackhi_epi64(low, low));
        _mm_storel_epi64((__m128i *)(row + 2 * d_row), high);
        _mm_storel_epi64((__m128i *)(row + 3 * d_row), _mm_unpackhi_epi64(high, high));
    }
}

/* Bands of N rows of a strip whose source columns are contiguous, N x N items at a time;
 * the rows past the last whole band are left to the caller. Returns the rows copied. */
#define BLOCKS(NAME, SIZE, N, BLOCK, ATTRIBUTE)                                             \
    ATTRIBUTE static Py_ssize_t NAME(const char *src, Py_ssize_t s_col, char *dst,          \
                                     Py_ssize_t d_row, Py_ssize_t rows, Py_ssize_t cols)    \
    {                                                                                       \
        Py_ssize_t i = 0;                                                                   \
        for (; i + N <= rows; i += N) {                                                     \
            int ask = (i * SIZE) % PREFETCH_EVERY < N * SIZE;                               \
            for (Py_ssize_t j = 0; j < cols; j += N) {                                      \
                const char *c = src + i * SIZE + j * s_col;                                 \
                for (int k = 0; ask && k < N; k++) {                                        \
                    _mm_prefetch(c + k * s_col + PREFETCH, _MM_HINT_T0);                    \
                }                                                                           \
                BLOCK(c, s_col, dst + i * d_row + j * SIZE, d_row);                         \
            }                                                                               \
        }                                                                                   \
        return i;                                                                           \
    }

BLOCKS(blocks_8, 8, 4, block_8, __attribute__((target("avx2"))))
BLOCKS(blocks_4, 4, 4, block_4, )
BLOCKS(blocks_2, 2, 8, block_2, )
BLOCKS(blocks_1, 1, 8, block_1, )

/* Whole bands of the columns in blocks in registers, the other items one at a time. */
#define VECTOR_STRIP(NAME, SIZE, N, USABLE)                                                 \
    static void NAME(const char *src, Py_ssize_t s_row, Py_ssize_t s_col, char *dst,       \
                     Py_ssize_t d_row, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t size) \
    {                                                                                       \
        Py_ssize_t done = 0, wide = cols - cols % N;                                        \
        if ((USABLE) && s_row == SIZE && wide > 0) {                                        \
            done = blocks_##SIZE(src, s_col, dst, d_row, rows, wide);                       \
            items_##SIZE(src + wide * s_col, s_row, s_col, dst + wide * SIZE, d_row, done,  \
                         cols - wide, size);                                                \
        }                                                                                   \
        items_##SIZE(src + done * s_row, s_row, s_col, dst + done * d_row, d_row,           \
                     rows - done, cols, size);                                              \
    }

VECTOR_STRIP(strip_8, 8, 4, has_avx2)
VECTOR_STRIP(strip_4, 4, 4, 1)
VECTOR_STRIP(strip_2, 2, 8, 1)
VECTOR_STRIP(strip_1, 1, 8, 1)
#else
#define strip_8 items_8
#define strip_4 items_4
#define strip_2 items_2
#define strip_1 items_1
#endif

static StripKernel strip_kernel(Py_ssize_t size)
{
    static const StripKernel typed[17] = {
        [1] = strip_1, [2] = strip_2, [4] = strip_4, [8] = strip_8, [16] = strip_16};
    return size <= 16 && typed[size] ? typed[size] : strip_any;
}

/* Drops axes of length 1 and merges axes that are one in both arrays; 0 if the array is empty. */
static int simplify(Layout *l, Py_buffer *view)
{
    Py_ssize_t stride = view->itemsize;
    int n = 0;
    for (int k = view->ndim - 1; k >= 0; k--) { /* destination strides, innermost first */
        if (view->shape[k] == 0) {
            return 0;
        }
        if (view->shape[k] == 1) {
            continue;
        }
        l->shape[n] = view->shape[k];
        l->src[n] = view->strides[k];
        l->dst[n] = stride;
        stride *= view->shape[k];
        n++;
    }
    /* reverse into C order, merging an axis into the next inner one where strides chain */
    Layout out;
    int m = 0;
    for (int k = n - 1; k >= 0; k--) {
        if (m > 0 && out.src[m - 1] == l->src[k] * l->shape[k]) {
            out.shape[m - 1] *= l->shape[k];
            out.src[m - 1] = l->src[k];
            out.dst[m - 1] = l->dst[k];
            continue;
        }
        out.shape[m] = l->shape[k];
        out.src[m] = l->src[k];
        out.dst[m] = l->dst[k];
        m++;
    }
    memcpy(l, &out, sizeof(out));
    l->ndim = m;
    return 1;
}

/* Calls the copy of one run (a row, or a plane of two axes) at every index of the other axes. */
typedef struct {
    const Layout *l;
    int axes[MAX_DIMS]; /* the other axes, outermost first */
    int count;
} Outer;

static void outer_init(Outer *o, const Layout *l, int skip1, int skip2)
{
    o->l = l;
    o->count = 0;
    for (int k = 0; k < l->ndim; k++) {
        if (k != skip1 && k != skip2) {
            o->axes[o->count++] = k;
        }
    }
}

/* Advances the index; 0 once every index was visited. Offsets follow the index. */
static int outer_next(const Outer *o, Py_ssize_t *index, Py_ssize_t *src, Py_ssize_t *dst)
{
    for (int a = o->count - 1; a >= 0; a--) {
        int k = o->axes[a];
        *src += o->l->src[k];
        *dst += o->l->dst[k];
        if (++index[a] < o->l->shape[k]) {
            return 1;
        }
        *src -= o->l->src[k] * o->l->shape[k];
        *dst -= o->l->dst[k] * o->l->shape[k];
        index[a] = 0;
    }
    return 0;
}

static Py_ssize_t magnitude(Py_ssize_t x) { return x < 0 ? -x : x; }

/* The axis other than the last that is closest in the source, or -1 if the last is. */
static int transposed_axis(const Layout *l)
{
    int last = l->ndim - 1, best = -1;
    Py_ssize_t nearest = magnitude(l->src[last]);
    for (int k = 0; k < last; k++) {
        if (magnitude(l->src[k]) < nearest) {
            nearest = magnitude(l->src[k]);
            best = k;
        }
    }
    return best;
}

static void copy_layout(const Layout *l, const char *src, char *dst, Py_ssize_t size)
{
    if (l->ndim == 0) {
        memcpy(dst, src, (size_t)size);
        return;
    }
    int last = l->ndim - 1, near = -1;
    Py_ssize_t index[MAX_DIMS] = {0}, from = 0, to = 0, cols = l->shape[last];
    StripKernel strip = strip_kernel(size);
    Outer outer;
    if (l->src[last] == size) { /* rows lie contiguous in the source: copied whole */
        outer_init(&outer, l, last, -1);
        do {
            memcpy(dst + to, src + from, (size_t)(cols * size));
        } while (outer_next(&outer, index, &from, &to));
        return;
    }
    near = transposed_axis(l); /* may be an axis of stride 0 (broadcast): read over and over */
    outer_init(&outer, l, last, near);
    if (near < 0) { /* a gather along each row, no transpose */
        do {
            strip(src + from, 0, l->src[last], dst + to, 0, 1, cols, size);
        } while (outer_next(&outer, index, &from, &to));
        return;
    }
    Py_ssize_t width = STRIP_BYTES / size > 0 ? STRIP_BYTES / size : 1;
    do { /* strips of a few columns, each walked down all of its rows */
        for (Py_ssize_t j = 0; j < cols; j += width) {
            Py_ssize_t n = cols - j < width ? cols - j : width;
            strip(src + from + j * l->src[last], l->src[near], l->src[last], dst + to + j * size,
                  l->dst[near], l->shape[near], n, size);
        }
    } while (outer_next(&outer, index, &from, &to));
}

PyDoc_STRVAR(copy_c_order_doc,
"copy_c_order(src, dst) -> int\n\n"
"Copies the items of ``src`` (any object exporting a strided buffer) into the\n"
"writable contiguous buffer ``dst`` in C order, and returns the bytes written.\n"
"Items are moved as raw bytes of ``src``'s item size; the GIL is released\n"
"during the copy.");

static PyObject *copy_c_order(PyObject *module, PyObject *args)
{
    PyObject *source, *target;
    Py_buffer from, to;
    if (!PyArg_ParseTuple(args, "OO:copy_c_order", &source, &target)) {
        return NULL;
    }
    if (PyObject_GetBuffer(source, &from, PyBUF_STRIDES) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(target, &to, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&from);
        return NULL;
    }
    PyObject *result = NULL;
    Layout layout;
    if (from.ndim > MAX_DIMS || from.itemsize <= 0) {
        PyErr_SetString(PyExc_ValueError, "copy_c_order: unsupported source layout");
    }
    else if (to.len < from.len) {
        PyErr_Format(PyExc_ValueError, "copy_c_order: destination of %zd bytes for %zd",
                     to.len, from.len);
    }
    else {
        int nonempty = simplify(&layout, &from);
        Py_BEGIN_ALLOW_THREADS
        if (nonempty) {
            copy_layout(&layout, from.buf, to.buf, from.itemsize);
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(from.len);
    }
    PyBuffer_Release(&to);
    PyBuffer_Release(&from);
    return result;
}

static PyMethodDef methods[] = {
    {"copy_c_order", copy_c_order, METH_VARARGS, copy_c_order_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fleche._transpose",
    "The C-order copy of a strided array, tiled so a transpose runs in the cache.", -1, methods,
};

PyMODINIT_FUNC PyInit__transpose(void)
{
#ifdef VECTOR_KERNELS
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
