/* test_gguf_corrupt.c — corruption sweep of the GGUF reader over the shared model files.
 *
 * For each file: every truncation in the header region (or, for large headers, the first 16 and
 * last 2 KiB, 17 cuts around each entry's boundaries and a seeded sample), a sample of cuts in
 * the data region, and thousands of seeded single- and multi-byte changes in the header. Each
 * must either parse into something whose every pointer stays inside the buffer, or fail with a
 * message; never crash, hang or leak. Every proper prefix of these files is invalid, so each
 * truncation must fail, and with a message that says the file ends too early.
 *
 * Reads past a truncation point land in memory that belongs to the buffer, so the bytes past it
 * are marked unaddressable for AddressSanitizer (and for valgrind when run under it); the suite's
 * ASan build runs this test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/gguf.h"

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_ASAN 1
#endif
#endif
#ifdef SWEEP_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SWEEP_VALGRIND 1
#endif
#endif

/* Make [p, p+n) unaddressable (1) or addressable again (0) for the checkers that are present. */
static void guard(const uint8_t *p, size_t n, int poison) {
    if (n == 0) return;
#ifdef SWEEP_ASAN
    if (poison)
        ASAN_POISON_MEMORY_REGION(p, n);
    else
        ASAN_UNPOISON_MEMORY_REGION(p, n);
    if (poison) assert_true(__asan_address_is_poisoned(p));
#endif
#ifdef SWEEP_VALGRIND
    if (poison)
        VALGRIND_MAKE_MEM_NOACCESS(p, n);
    else
        VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    (void)p, (void)poison;
}

static const char *model_path(const char *name) {
    static char path[4096];
    const char *env = getenv("MODELHUB_MODELS");
    const char *src = getenv("MODELHUB_SRC");
    if (env && *env)
        snprintf(path, sizeof path, "%s/%s", env, name);
    else
        snprintf(path, sizeof path, "%s/../shared/models/%s", src && *src ? src : ".", name);
    return path;
}

/* The whole file in an allocation of exactly its size. */
static uint8_t *load(const char *name, size_t *size) {
    const char *path = model_path(name);
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s (set MODELHUB_MODELS to the shared models folder)", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return p;
}

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static uint64_t rng_below(uint64_t n) {
    return n ? rng() % n : 0;
}

static const size_t value_sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Scratch for the strings of an array: a parsed array has at most file size / 8 of them. */
static gguf_str *scratch;
static size_t scratch_cap;

static int inside(const gguf *f, const void *p, uint64_t n) {
    const uint8_t *b = gguf_base(f), *q = p;
    return q >= b && q <= b + gguf_file_size(f) && n <= (uint64_t)(b + gguf_file_size(f) - q);
}

/* Byte just past the end of a kv's value (checks, for string arrays, that every element fits). */
static const uint8_t *kv_end(const gguf *f, const gguf_kv *kv) {
    if (kv->type == GGUF_VT_STRING) {
        uint64_t len;
        assert_true(inside(f, kv->val, 8));
        memcpy(&len, kv->val, 8);
        assert_true(inside(f, kv->val + 8, len));
        return kv->val + 8 + len;
    }
    if (kv->type != GGUF_VT_ARRAY) {
        assert_true(kv->type < GGUF_VT_COUNT);
        assert_true(inside(f, kv->val, value_sizes[kv->type]));
        return kv->val + value_sizes[kv->type];
    }
    assert_true(kv->arr_type < GGUF_VT_COUNT && kv->arr_type != GGUF_VT_ARRAY);
    if (kv->arr_type != GGUF_VT_STRING) {
        assert_true(kv->arr_n <= gguf_file_size(f) / value_sizes[kv->arr_type]);
        assert_true(inside(f, kv->val, kv->arr_n * value_sizes[kv->arr_type]));
        for (uint64_t i = 0; i < kv->arr_n && i < 4; i++) (void)gguf_arr_num(kv, i);
        return kv->val + kv->arr_n * value_sizes[kv->arr_type];
    }
    assert_true(kv->arr_n <= gguf_file_size(f) / 8 && kv->arr_n <= scratch_cap);
    gguf_str *s = scratch;
    assert_int_equal(gguf_arr_strings(kv, s), 0);
    const uint8_t *end = kv->val;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        assert_true(inside(f, s[i].ptr, s[i].len));
        end = (const uint8_t *)s[i].ptr + s[i].len;
    }
    return end;
}

/* A file that parsed: every pointer it hands out stays inside the buffer, the getters agree
 * with the types, and the tensors sit aligned in the data section. */
static void check_parsed(const gguf *f) {
    uint32_t align = gguf_alignment(f);
    assert_true(align && (align & (align - 1)) == 0);
    assert_int_equal(gguf_data_offset(f) % align, 0);
    assert_true(gguf_n_kv(f) >= 0 && gguf_n_tensors(f) >= 0);
    for (int i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        assert_true(inside(f, kv->key.ptr, kv->key.len));
        (void)kv_end(f, kv);
        char key[256];
        if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, kv->key.len)) continue;
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        assert_int_equal(gguf_find_key(f, key), i); /* keys are unique */
        uint32_t u;
        int64_t i64;
        float fl;
        int bl;
        gguf_str s;
        const gguf_kv *arr;
        int numeric = kv->type != GGUF_VT_STRING && kv->type != GGUF_VT_ARRAY &&
                      kv->type != GGUF_VT_FLOAT32 && kv->type != GGUF_VT_FLOAT64;
        int rc = gguf_get_i64(f, key, &i64);
        assert_true(numeric ? rc == 0 || kv->type == GGUF_VT_UINT64 : rc == -2);
        rc = gguf_get_u32(f, key, &u);
        assert_true(rc == 0 || rc == -2);
        rc = gguf_get_bool(f, key, &bl);
        assert_true(rc == 0 || rc == -2);
        rc = gguf_get_f32(f, key, &fl);
        assert_int_equal(rc, kv->type == GGUF_VT_STRING || kv->type == GGUF_VT_ARRAY ? -2 : 0);
        rc = gguf_get_str(f, key, &s);
        assert_int_equal(rc, kv->type == GGUF_VT_STRING ? 0 : -2);
        if (rc == 0) assert_true(inside(f, s.ptr, s.len));
        rc = gguf_get_arr(f, key, kv->arr_type, &arr);
        assert_int_equal(rc, kv->type == GGUF_VT_ARRAY ? 0 : -2);
    }
    const uint8_t *data = gguf_base(f) + gguf_data_offset(f);
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_true(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        assert_true(ggml_blck_size(t->type) > 0);
        uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        assert_int_equal(t->nbytes, ggml_row_size(t->type, t->ne[0]) * rows);
        assert_ptr_equal(t->data, data + t->offset);
        assert_int_equal(((const uint8_t *)t->data - gguf_base(f)) % align, 0);
        assert_true(inside(f, t->data, t->nbytes));
        assert_ptr_equal(gguf_find_tensor(f, t->name), t); /* names are unique */
    }
}

typedef struct {
    const char *name;
    int n_flips; /* seeded header changes */
    int n_data_cuts;
} sweep_spec;

typedef struct {
    long parses, parsed, failed;
    double slowest;
} sweep_stats;

/* Parse buf[0..n): must parse (then check it) or fail with a message. Returns the rc. */
static int try_parse(const uint8_t *buf, size_t n, char *err, size_t errlen, sweep_stats *st) {
    gguf *f = (gguf *)"not reset";
    err[0] = 0;
    clock_t t0 = clock();
    int rc = gguf_open_memory(buf, n, &f, err, errlen);
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (dt > st->slowest) st->slowest = dt;
    st->parses++;
    if (rc == 0) {
        assert_non_null(f);
        check_parsed(f);
        gguf_close(f);
        st->parsed++;
    } else {
        assert_int_equal(rc, -1);
        assert_null(f);
        if (err[0] == 0) fail_msg("failure without a message at size %zu", n);
        st->failed++;
    }
    return rc;
}

static int cmp_desc(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x < y) - (x > y);
}

static void sweep_truncations(const sweep_spec *spec, uint8_t *buf, size_t size, const gguf *full,
                              sweep_stats *st) {
    size_t data = (size_t)gguf_data_offset(full);
    size_t header = data < size ? data : size;
    /* the cut points */
    enum { HEAD = 16384, TAIL = 2048, SAMPLE = 2048 };
    size_t cap = 2 * (HEAD + TAIL + SAMPLE) + (size_t)spec->n_data_cuts +
                 64 * (size_t)gguf_n_kv(full) + 4 * (size_t)gguf_n_tensors(full) + 8;
    size_t *cuts = malloc(cap * sizeof *cuts), n_cuts = 0;
    assert_non_null(cuts);
    if (header <= 2 * (HEAD + TAIL + SAMPLE)) {
        for (size_t n = 0; n <= header; n++) cuts[n_cuts++] = n;
    } else {
        for (size_t n = 0; n < HEAD; n++) cuts[n_cuts++] = n;
        for (size_t n = header - TAIL; n <= header; n++) cuts[n_cuts++] = n;
        for (int i = 0; i < gguf_n_kv(full); i++) {
            const gguf_kv *kv = gguf_kv_at(full, i);
            /* where its key, its value and the next entry start */
            size_t marks[3] = {(size_t)((const uint8_t *)kv->key.ptr - buf) - 8,
                               (size_t)(kv->val - buf), (size_t)(kv_end(full, kv) - buf)};
            for (int k = 0; k < 3; k++)
                for (int d = -8; d <= 8; d++)
                    if ((ptrdiff_t)marks[k] + d >= 0 && marks[k] + (size_t)d <= header)
                        cuts[n_cuts++] = marks[k] + (size_t)d;
        }
        for (int i = 0; i < SAMPLE; i++) cuts[n_cuts++] = (size_t)rng_below(header);
    }
    for (int i = 0; i < gguf_n_tensors(full); i++) {
        const gguf_tensor *t = gguf_tensor_at(full, i);
        size_t at = data + (size_t)t->offset;
        size_t edges[4] = {at + 1, at + (size_t)t->nbytes / 2, at + (size_t)t->nbytes - 1,
                           at + (size_t)t->nbytes};
        for (int k = 0; k < 4; k++)
            if (edges[k] < size) cuts[n_cuts++] = edges[k];
    }
    for (int i = 0; data < size && i < spec->n_data_cuts; i++)
        cuts[n_cuts++] = data + (size_t)rng_below(size - data);
    assert_true(n_cuts <= cap);

    /* Largest first, so the unaddressable tail only grows: poisoning stays linear in size. */
    qsort(cuts, n_cuts, sizeof *cuts, cmp_desc);
    size_t guarded_from = size;
    char err[512];
    for (size_t i = 0; i < n_cuts; i++) {
        size_t n = cuts[i];
        if (n >= size) continue;
        if (n < guarded_from) {
            guard(buf + n, guarded_from - n, 1);
            guarded_from = n;
        }
        if (try_parse(buf, n, err, sizeof err, st) == 0)
            fail_msg("%s cut to %zu bytes (of %zu) parsed", spec->name, n, size);
        if (!strstr(err, "truncated") && !strstr(err, "past end") &&
            !strstr(err, "more than the file can hold") && !strstr(err, "file too small"))
            fail_msg("%s cut to %zu bytes: '%s' does not say the file is short", spec->name, n,
                     err);
        if (n >= data && gguf_n_tensors(full) > 0) {
            /* the header is whole: the message names a tensor that does not fit */
            const char *q = strchr(err, '\'');
            const char *q2 = q ? strchr(q + 1, '\'') : NULL;
            if (!strstr(err, "extends past end of file") || !q2)
                fail_msg("%s cut to %zu: '%s'", spec->name, n, err);
            char name[GGUF_MAX_NAME + 1];
            snprintf(name, sizeof name, "%.*s", (int)(q2 - q - 1), q + 1);
            const gguf_tensor *t = gguf_find_tensor(full, name);
            if (!t || data + t->offset + t->nbytes <= n)
                fail_msg("%s cut to %zu: '%s' names a tensor that fits", spec->name, n, err);
        }
    }
    guard(buf + guarded_from, size - guarded_from, 0);
    free(cuts);
}

static void sweep_flips(const sweep_spec *spec, uint8_t *buf, size_t size, size_t header,
                        sweep_stats *st) {
    size_t edge = header < 4096 ? header : 4096;
    char err[512];
    for (int trial = 0; trial < spec->n_flips; trial++) {
        int k = 1 + (int)rng_below(trial % 4 == 0 ? 8 : 3);
        size_t pos[8];
        uint8_t old[8];
        for (int j = 0; j < k; j++) {
            uint64_t zone = rng_below(4);
            if (zone == 0)
                pos[j] = (size_t)rng_below(edge); /* counts, first keys */
            else if (zone == 1)
                pos[j] = header - 1 - (size_t)rng_below(edge); /* tensor infos */
            else
                pos[j] = (size_t)rng_below(header);
            if (j > 0 && rng_below(2)) pos[j] = pos[j - 1] + 1 < header ? pos[j - 1] + 1 : pos[j];
            old[j] = buf[pos[j]];
            switch (rng_below(5)) {
            case 0: buf[pos[j]] ^= (uint8_t)(1u << rng_below(8)); break;
            case 1: buf[pos[j]] = 0xff; break;
            case 2: buf[pos[j]] = 0; break;
            case 3: buf[pos[j]] = (uint8_t)(old[j] + 1); break;
            default: buf[pos[j]] = (uint8_t)rng(); break;
            }
        }
        try_parse(buf, size, err, sizeof err, st);
        for (int j = k - 1; j >= 0; j--) buf[pos[j]] = old[j];
    }
}

static void sweep_file(const sweep_spec *spec, uint64_t seed) {
    rng_state = seed;
    size_t size;
    uint8_t *buf = load(spec->name, &size);
    scratch_cap = size / 8 + 1;
    scratch = malloc(scratch_cap * sizeof *scratch);
    assert_non_null(scratch);
    gguf *full = NULL;
    char err[512];
    if (gguf_open_memory(buf, size, &full, err, sizeof err) < 0)
        fail_msg("%s does not parse: %s", spec->name, err);
    size_t data = (size_t)gguf_data_offset(full);
    size_t header = data < size ? data : size;

    sweep_stats cut = {0}, flip = {0};
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    sweep_truncations(spec, buf, size, full, &cut);
    sweep_flips(spec, buf, size, header, &flip);
    double elapsed = (double)clock() / CLOCKS_PER_SEC - t0;
    gguf_close(full);
    free(buf);
    free(scratch);
    scratch = NULL;

    print_message("%s: %ld truncations (all rejected); %ld header changes: %ld parsed, %ld "
                  "rejected; slowest parse %.1f ms; %.2f s\n",
                  spec->name, cut.parses, flip.parses, flip.parsed, flip.failed,
                  1e3 * (cut.slowest > flip.slowest ? cut.slowest : flip.slowest), elapsed);
    assert_int_equal(cut.failed, cut.parses);
    assert_int_equal(flip.parses, spec->n_flips);
    /* the changes must reach the checks, not only string bytes */
    assert_true(flip.failed > flip.parses / 10);
    assert_true(cut.slowest < 0.5 && flip.slowest < 0.5);
}

static void test_sweep_stories(void **state) {
    (void)state;
    sweep_spec spec = {"stories260K.gguf", 20000, 512};
    sweep_file(&spec, 0x5701e5);
}

static void test_sweep_tiny_random(void **state) {
    (void)state;
    sweep_spec spec = {"llama-2-tiny-random.gguf", 3000, 512};
    sweep_file(&spec, 0x717e);
}

static void test_sweep_vocab(void **state) {
    (void)state;
    sweep_spec spec = {"ggml-vocab-llama-spm.gguf", 2000, 0};
    sweep_file(&spec, 0x5e7);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_stories),
        cmocka_unit_test(test_sweep_tiny_random),
        cmocka_unit_test(test_sweep_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
