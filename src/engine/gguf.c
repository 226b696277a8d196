/* gguf.c — GGUF reader (mmap, bounds-checked) and writer. See gguf.h for the format. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/common.h"

struct gguf {
    const uint8_t *base; /* whole file */
    uint64_t size;
    int mapped; /* 1 when base is our mmap */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int n_kv;
    gguf_kv *kvs;
    int n_tensors;
    gguf_tensor *tensors;
};

/* ==== Type tables ==== */

static const char *const value_type_names[GGUF_VT_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

static const size_t value_type_sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct {
    const char *name;
    size_t type_size; /* bytes per block */
    size_t blck_size; /* elements per block */
} type_info;

static const type_info type_infos[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 4, 1},
    [GGML_TYPE_F16] = {"f16", 2, 1},
    [GGML_TYPE_Q4_0] = {"q4_0", 18, 32},
    [GGML_TYPE_Q4_1] = {"q4_1", 20, 32},
    [GGML_TYPE_Q5_0] = {"q5_0", 22, 32},
    [GGML_TYPE_Q5_1] = {"q5_1", 24, 32},
    [GGML_TYPE_Q8_0] = {"q8_0", 34, 32},
    [GGML_TYPE_Q8_1] = {"q8_1", 36, 32},
    [GGML_TYPE_Q2_K] = {"q2_k", 84, 256},
    [GGML_TYPE_Q3_K] = {"q3_k", 110, 256},
    [GGML_TYPE_Q4_K] = {"q4_k", 144, 256},
    [GGML_TYPE_Q5_K] = {"q5_k", 176, 256},
    [GGML_TYPE_Q6_K] = {"q6_k", 210, 256},
    [GGML_TYPE_Q8_K] = {"q8_k", 292, 256},
    [16] = {"iq2_xxs", 66, 256},
    [17] = {"iq2_xs", 74, 256},
    [18] = {"iq3_xxs", 98, 256},
    [19] = {"iq1_s", 50, 256},
    [20] = {"iq4_nl", 18, 32},
    [21] = {"iq3_s", 110, 256},
    [22] = {"iq2_s", 82, 256},
    [23] = {"iq4_xs", 136, 256},
    [GGML_TYPE_I8] = {"i8", 1, 1},
    [GGML_TYPE_I16] = {"i16", 2, 1},
    [GGML_TYPE_I32] = {"i32", 4, 1},
    [GGML_TYPE_I64] = {"i64", 8, 1},
    [GGML_TYPE_F64] = {"f64", 8, 1},
    [29] = {"iq1_m", 56, 256},
    [GGML_TYPE_BF16] = {"bf16", 2, 1},
    [34] = {"tq1_0", 54, 256},
    [35] = {"tq2_0", 66, 256},
};

const char *gguf_value_type_name(uint32_t type) {
    return type < GGUF_VT_COUNT ? value_type_names[type] : "unknown";
}

const char *ggml_type_name(uint32_t type) {
    return type < GGML_TYPE_COUNT && type_infos[type].name ? type_infos[type].name : "unknown";
}

size_t ggml_type_size(uint32_t type) {
    return type < GGML_TYPE_COUNT ? type_infos[type].type_size : 0;
}

size_t ggml_blck_size(uint32_t type) {
    return type < GGML_TYPE_COUNT ? type_infos[type].blck_size : 0;
}

size_t ggml_row_size(uint32_t type, uint64_t n) {
    size_t bs = ggml_blck_size(type);
    return bs ? (size_t)(n / bs) * ggml_type_size(type) : 0;
}

int ggml_type_from_name(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (type_infos[t].name && strcasecmp(type_infos[t].name, name) == 0) return t;
    return -1;
}

/* ==== Reader ==== */

typedef struct {
    const uint8_t *p;
    uint64_t pos, size;
    char *err;
    size_t errlen;
} cursor;

__attribute__((format(printf, 2, 3))) static int fail(cursor *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return fail(c, "truncated file: %s at offset %llu needs %llu bytes, only %llu left", what,
                    (unsigned long long)c->pos, (unsigned long long)n,
                    (unsigned long long)(c->size - c->pos));
    return 0;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what) < 0) return -1;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int read_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what) < 0) return -1;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int read_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t len;
    if (read_u64(c, &len, what) < 0) return -1;
    if (len > c->size - c->pos)
        return fail(c, "%s at offset %llu has length %llu, past end of file (%llu bytes)", what,
                    (unsigned long long)(c->pos - 8), (unsigned long long)len,
                    (unsigned long long)c->size);
    s->ptr = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

/* Skip a string value of `key`. The message is formatted only on failure: string arrays hold
 * 100k+ elements, and formatting it for each one made parsing ten times slower. */
static int skip_string(cursor *c, const char *key) {
    uint64_t len;
    if (c->size - c->pos >= 8) {
        memcpy(&len, c->p + c->pos, 8);
        if (len <= c->size - c->pos - 8) {
            c->pos += 8 + len;
            return 0;
        }
    }
    gguf_str s;
    char what[128];
    snprintf(what, sizeof what, "string value of key '%s'", key);
    return read_str(c, &s, what);
}

/* Skip a value of `type` (not an array) and check it fits. */
static int skip_scalar(cursor *c, uint32_t type, const char *key) {
    if (type == GGUF_VT_STRING) return skip_string(c, key);
    if (type >= GGUF_VT_COUNT || type == GGUF_VT_ARRAY)
        return fail(c, "key '%s' has unknown value type %u", key, type);
    return need(c, value_type_sizes[type], "metadata value") < 0
               ? -1
               : (c->pos += value_type_sizes[type], 0);
}

static int parse_kv(cursor *c, gguf_kv *kv, int index) {
    char what[64];
    snprintf(what, sizeof what, "key of metadata entry %d", index);
    if (read_str(c, &kv->key, what) < 0) return -1;
    char key[96];
    snprintf(key, sizeof key, "%.*s%s", (int)MH_MIN(kv->key.len, 80), kv->key.ptr,
             kv->key.len > 80 ? "..." : "");
    if (read_u32(c, &kv->type, "metadata value type") < 0) return -1;
    kv->val = c->p + c->pos;
    if (kv->type != GGUF_VT_ARRAY) return skip_scalar(c, kv->type, key);
    if (read_u32(c, &kv->arr_type, "array element type") < 0) return -1;
    if (read_u64(c, &kv->arr_n, "array length") < 0) return -1;
    kv->val = c->p + c->pos;
    if (kv->arr_type == GGUF_VT_ARRAY)
        return fail(c, "key '%s' is an array of arrays, which is not supported", key);
    if (kv->arr_type >= GGUF_VT_COUNT)
        return fail(c, "key '%s' is an array of unknown type %u", key, kv->arr_type);
    if (kv->arr_type == GGUF_VT_STRING) {
        /* each string takes at least its 8-byte length */
        if (kv->arr_n > (c->size - c->pos) / 8)
            return fail(c, "array '%s' claims %llu strings, more than the file can hold", key,
                        (unsigned long long)kv->arr_n);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if (skip_string(c, key) < 0) return -1;
        return 0;
    }
    size_t es = value_type_sizes[kv->arr_type];
    if (kv->arr_n > (c->size - c->pos) / es)
        return fail(c, "array '%s' of %llu %s elements extends past end of file", key,
                    (unsigned long long)kv->arr_n, value_type_names[kv->arr_type]);
    c->pos += kv->arr_n * es;
    return 0;
}

static int parse_tensor(cursor *c, gguf_tensor *t, int index) {
    gguf_str name;
    char what[64];
    snprintf(what, sizeof what, "name of tensor %d", index);
    if (read_str(c, &name, what) < 0) return -1;
    if (name.len > GGUF_MAX_NAME)
        return fail(c, "tensor %d has a name of %llu bytes (at most %d allowed)", index,
                    (unsigned long long)name.len, GGUF_MAX_NAME);
    if (memchr(name.ptr, 0, name.len))
        return fail(c, "tensor %d has a NUL byte in its name", index);
    memcpy(t->name, name.ptr, name.len);
    t->name[name.len] = 0;
    if (read_u32(c, &t->n_dims, "tensor dimension count") < 0) return -1;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c, "tensor '%s' has %u dimensions (1..%d supported)", t->name, t->n_dims,
                    GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (read_u64(c, &t->ne[d], "tensor dimension") < 0) return -1;
        if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40))
            return fail(c, "tensor '%s' has invalid dimension %u = %llu", t->name, d,
                        (unsigned long long)t->ne[d]);
        if (n_elems > ((uint64_t)1 << 50) / t->ne[d])
            return fail(c, "tensor '%s' has too many elements", t->name);
        n_elems *= t->ne[d];
    }
    if (read_u32(c, &t->type, "tensor type") < 0) return -1;
    if (ggml_blck_size(t->type) == 0)
        return fail(c, "tensor '%s' has unknown type %u", t->name, t->type);
    size_t bs = ggml_blck_size(t->type);
    if (t->ne[0] % bs != 0)
        return fail(c, "tensor '%s' of type %s has row length %llu, not a multiple of %zu", t->name,
                    ggml_type_name(t->type), (unsigned long long)t->ne[0], bs);
    t->nbytes = n_elems / bs * ggml_type_size(t->type);
    if (read_u64(c, &t->offset, "tensor offset") < 0) return -1;
    return 0;
}

/* Duplicate keys and tensor names are found by sorting (a pairwise check is quadratic: a crafted
 * 3 MB file of 200k distinct keys took 90 s). */
static int cmp_str(const void *a, const void *b) {
    const gguf_str *x = a, *y = b;
    int r = memcmp(x->ptr, y->ptr, MH_MIN(x->len, y->len));
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_duplicate_keys(const gguf *f, cursor *c) {
    if (f->n_kv < 2) return 0;
    gguf_str *keys = malloc((size_t)f->n_kv * sizeof *keys);
    if (!keys) return fail(c, "out of memory");
    for (int i = 0; i < f->n_kv; i++) keys[i] = f->kvs[i].key;
    qsort(keys, (size_t)f->n_kv, sizeof *keys, cmp_str);
    int rc = 0;
    for (int i = 1; i < f->n_kv && rc == 0; i++)
        if (cmp_str(&keys[i - 1], &keys[i]) == 0)
            rc =
                fail(c, "duplicate metadata key '%.*s'", (int)MH_MIN(keys[i].len, 80), keys[i].ptr);
    free(keys);
    return rc;
}

static int check_duplicate_tensors(const gguf *f, cursor *c) {
    if (f->n_tensors < 2) return 0;
    const char **names = malloc((size_t)f->n_tensors * sizeof *names);
    if (!names) return fail(c, "out of memory");
    for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->n_tensors, sizeof *names, cmp_name);
    int rc = 0;
    for (int i = 1; i < f->n_tensors && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = fail(c, "duplicate tensor name '%s'", names[i]);
    free(names);
    return rc;
}

static int parse(gguf *f, char *err, size_t errlen) {
    cursor c = {.p = f->base, .pos = 0, .size = f->size, .err = err, .errlen = errlen};
    uint32_t magic;
    if (f->size < 4)
        return fail(&c, "file too small (%llu bytes) to be GGUF", (unsigned long long)f->size);
    memcpy(&magic, f->base, 4);
    if (memcmp(f->base, "GGUF", 4) != 0) return fail(&c, "not a GGUF file (bad magic)");
    c.pos = 4;
    if (read_u32(&c, &f->version, "version") < 0) return -1;
    if (f->version == 1) return fail(&c, "GGUF version 1 is not supported (only 2 and 3)");
    if (f->version != 2 && f->version != 3)
        return fail(&c, "unsupported GGUF version %u (only 2 and 3)", f->version);
    uint64_t n_tensors, n_kv;
    if (read_u64(&c, &n_tensors, "tensor count") < 0) return -1;
    if (read_u64(&c, &n_kv, "metadata count") < 0) return -1;
    /* a kv takes at least 8 (key len) + 4 (type) + 1 bytes; a tensor info at least 8+4+8+4+8.
     * Counts are kept in ints, so files over ~28 GB also need the INT_MAX bound. */
    if (n_kv > (f->size - c.pos) / 13 || n_kv > INT_MAX)
        return fail(&c, "metadata count %llu is more than the file can hold",
                    (unsigned long long)n_kv);
    if (n_tensors > (f->size - c.pos) / 32 || n_tensors > INT_MAX)
        return fail(&c, "tensor count %llu is more than the file can hold",
                    (unsigned long long)n_tensors);
    f->n_kv = (int)n_kv;
    f->n_tensors = (int)n_tensors;
    f->kvs = calloc(n_kv ? n_kv : 1, sizeof *f->kvs);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors) return fail(&c, "out of memory");
    for (int i = 0; i < f->n_kv; i++)
        if (parse_kv(&c, &f->kvs[i], i) < 0) return -1;
    if (check_duplicate_keys(f, &c) < 0) return -1;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int ai = gguf_find_key(f, "general.alignment");
    if (ai >= 0) {
        if (f->kvs[ai].type != GGUF_VT_UINT32)
            return fail(&c, "general.alignment has type %s, expected u32",
                        gguf_value_type_name(f->kvs[ai].type));
        uint32_t a;
        memcpy(&a, f->kvs[ai].val, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return fail(&c, "general.alignment = %u is not a power of two", a);
        f->alignment = a;
    }
    for (int i = 0; i < f->n_tensors; i++)
        if (parse_tensor(&c, &f->tensors[i], i) < 0) return -1;
    uint64_t data = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->n_tensors > 0 && data > f->size)
        return fail(&c, "truncated file: tensor data section would start at %llu, past end (%llu)",
                    (unsigned long long)data, (unsigned long long)f->size);
    f->data_offset = data;
    uint64_t avail = f->size >= data ? f->size - data : 0;
    if (check_duplicate_tensors(f, &c) < 0) return -1;
    for (int i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return fail(&c, "tensor '%s' offset %llu is not a multiple of the alignment %u",
                        t->name, (unsigned long long)t->offset, f->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return fail(&c, "tensor '%s' extends past end of file (data %llu+%llu, file has %llu)",
                        t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                        (unsigned long long)avail);
        t->data = f->base + data + t->offset;
    }
    return 0;
}

int gguf_open_memory(const void *buf, size_t size, gguf **out, char *err, size_t errlen) {
    *out = NULL;
    gguf *f = calloc(1, sizeof *f);
    if (!f) return snprintf(err, errlen, "out of memory"), -1;
    f->base = buf;
    f->size = size;
    if (parse(f, err, errlen) < 0) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open(const char *path, gguf **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return snprintf(err, errlen, "cannot open: %s", strerror(errno)), -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return -1;
    }
    if (st.st_size < 24) {
        snprintf(err, errlen, "file too small (%lld bytes) to be GGUF", (long long)st.st_size);
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return snprintf(err, errlen, "cannot mmap: %s", strerror(errno)), -1;
    gguf *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(map, (size_t)st.st_size);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    f->base = map;
    f->size = (uint64_t)st.st_size;
    f->mapped = 1;
    if (parse(f, err, errlen) < 0) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void gguf_close(gguf *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->kvs);
    free(f->tensors);
    free(f);
}

uint32_t gguf_version(const gguf *f) {
    return f->version;
}
uint32_t gguf_alignment(const gguf *f) {
    return f->alignment;
}
uint64_t gguf_file_size(const gguf *f) {
    return f->size;
}
uint64_t gguf_data_offset(const gguf *f) {
    return f->data_offset;
}
const uint8_t *gguf_base(const gguf *f) {
    return f->base;
}
int gguf_n_kv(const gguf *f) {
    return f->n_kv;
}
const gguf_kv *gguf_kv_at(const gguf *f, int i) {
    return i >= 0 && i < f->n_kv ? &f->kvs[i] : NULL;
}
int gguf_n_tensors(const gguf *f) {
    return f->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf *f, int i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

int gguf_find_key(const gguf *f, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < f->n_kv; i++)
        if (f->kvs[i].key.len == n && memcmp(f->kvs[i].key.ptr, key, n) == 0) return i;
    return -1;
}

const gguf_tensor *gguf_find_tensor(const gguf *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* Read a numeric scalar of `type` at p as int64 / double. Returns 0, or -1 for non-numeric. */
static int scalar_int(uint32_t type, const uint8_t *p, int64_t *out) {
    switch (type) {
    case GGUF_VT_UINT8: *out = *p; return 0;
    case GGUF_VT_INT8: *out = (int8_t)*p; return 0;
    case GGUF_VT_BOOL: *out = *p != 0; return 0;
    case GGUF_VT_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return 0;
    }
    case GGUF_VT_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return 0;
    }
    case GGUF_VT_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return 0;
    }
    case GGUF_VT_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return 0;
    }
    case GGUF_VT_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v;
        return 0;
    }
    case GGUF_VT_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        *out = v;
        return 0;
    }
    default: return -1;
    }
}

static int scalar_double(uint32_t type, const uint8_t *p, double *out) {
    if (type == GGUF_VT_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return 0;
    }
    if (type == GGUF_VT_FLOAT64) {
        memcpy(out, p, 8);
        return 0;
    }
    if (type == GGUF_VT_UINT64) { /* scalar_int refuses values past INT64_MAX */
        uint64_t v;
        memcpy(&v, p, 8);
        *out = (double)v;
        return 0;
    }
    int64_t i;
    if (scalar_int(type, p, &i) < 0) return -1;
    *out = (double)i;
    return 0;
}

int gguf_get_i64(const gguf *f, const char *key, int64_t *out) {
    int i = gguf_find_key(f, key);
    if (i < 0) return -1;
    return scalar_int(f->kvs[i].type, f->kvs[i].val, out) < 0 ? -2 : 0;
}

int gguf_get_u32(const gguf *f, const char *key, uint32_t *out) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc < 0) return rc;
    if (v < 0 || v > UINT32_MAX) return -2;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf *f, const char *key, float *out) {
    int i = gguf_find_key(f, key);
    if (i < 0) return -1;
    double d;
    if (scalar_double(f->kvs[i].type, f->kvs[i].val, &d) < 0) return -2;
    *out = (float)d;
    return 0;
}

int gguf_get_bool(const gguf *f, const char *key, int *out) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc < 0) return rc;
    *out = v != 0;
    return 0;
}

int gguf_get_str(const gguf *f, const char *key, gguf_str *out) {
    int i = gguf_find_key(f, key);
    if (i < 0) return -1;
    if (f->kvs[i].type != GGUF_VT_STRING) return -2;
    uint64_t len;
    memcpy(&len, f->kvs[i].val, 8);
    out->len = len;
    out->ptr = (const char *)f->kvs[i].val + 8;
    return 0;
}

int gguf_get_arr(const gguf *f, const char *key, uint32_t elem_type, const gguf_kv **kv) {
    int i = gguf_find_key(f, key);
    if (i < 0) return -1;
    if (f->kvs[i].type != GGUF_VT_ARRAY || f->kvs[i].arr_type != elem_type) return -2;
    *kv = &f->kvs[i];
    return 0;
}

int gguf_arr_strings(const gguf_kv *kv, gguf_str *out) {
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING) return -1;
    const uint8_t *p = kv->val; /* bounds were checked when the file was parsed */
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        out[i].len = len;
        out[i].ptr = (const char *)p + 8;
        p += 8 + len;
    }
    return 0;
}

double gguf_arr_num(const gguf_kv *kv, uint64_t i) {
    double d = 0;
    if (kv->arr_type < GGUF_VT_COUNT && value_type_sizes[kv->arr_type] && i < kv->arr_n)
        scalar_double(kv->arr_type, kv->val + i * value_type_sizes[kv->arr_type], &d);
    return d;
}

/* ==== Writer ==== */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} bytes;

static void bytes_put(bytes *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->buf = mh_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void bytes_u32(bytes *b, uint32_t v) {
    bytes_put(b, &v, 4);
}
static void bytes_u64(bytes *b, uint64_t v) {
    bytes_put(b, &v, 8);
}
static void bytes_str(bytes *b, const char *s, size_t n) {
    bytes_u64(b, n);
    bytes_put(b, s, n);
}

typedef struct {
    char name[GGUF_MAX_NAME + 1];
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    void *data;
} writer_tensor;

struct gguf_writer {
    bytes kv; /* serialised key/values */
    uint64_t n_kv;
    writer_tensor *tensors;
    int n_tensors, cap_tensors;
};

gguf_writer *gguf_writer_new(void) {
    return mh_xcalloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].data);
    free(w->tensors);
    free(w->kv.buf);
    free(w);
}

static void kv_head(gguf_writer *w, const char *key, uint32_t type) {
    bytes_str(&w->kv, key, strlen(key));
    bytes_u32(&w->kv, type);
    w->n_kv++;
}

void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    kv_head(w, key, GGUF_VT_UINT32);
    bytes_u32(&w->kv, v);
}

void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    kv_head(w, key, GGUF_VT_INT32);
    bytes_put(&w->kv, &v, 4);
}

void gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    kv_head(w, key, GGUF_VT_FLOAT32);
    bytes_put(&w->kv, &v, 4);
}

void gguf_writer_set_bool(gguf_writer *w, const char *key, int v) {
    kv_head(w, key, GGUF_VT_BOOL);
    uint8_t b = v != 0;
    bytes_put(&w->kv, &b, 1);
}

void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    kv_head(w, key, GGUF_VT_STRING);
    bytes_str(&w->kv, v, strlen(v));
}

void gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    kv_head(w, key, GGUF_VT_ARRAY);
    bytes_u32(&w->kv, GGUF_VT_STRING);
    bytes_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) bytes_str(&w->kv, v[i], strlen(v[i]));
}

void gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    kv_head(w, key, GGUF_VT_ARRAY);
    bytes_u32(&w->kv, GGUF_VT_FLOAT32);
    bytes_u64(&w->kv, n);
    bytes_put(&w->kv, v, n * 4);
}

void gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    kv_head(w, key, GGUF_VT_ARRAY);
    bytes_u32(&w->kv, GGUF_VT_INT32);
    bytes_u64(&w->kv, n);
    bytes_put(&w->kv, v, n * 4);
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    bytes_str(&w->kv, kv->key.ptr, kv->key.len);
    bytes_u32(&w->kv, kv->type);
    w->n_kv++;
    if (kv->type == GGUF_VT_STRING) {
        uint64_t len;
        memcpy(&len, kv->val, 8);
        bytes_put(&w->kv, kv->val, 8 + len);
    } else if (kv->type == GGUF_VT_ARRAY) {
        bytes_u32(&w->kv, kv->arr_type);
        bytes_u64(&w->kv, kv->arr_n);
        if (kv->arr_type == GGUF_VT_STRING) {
            const uint8_t *p = kv->val;
            for (uint64_t i = 0; i < kv->arr_n; i++) {
                uint64_t len;
                memcpy(&len, p, 8);
                bytes_put(&w->kv, p, 8 + len);
                p += 8 + len;
            }
        } else {
            bytes_put(&w->kv, kv->val, kv->arr_n * value_type_sizes[kv->arr_type]);
        }
    } else {
        bytes_put(&w->kv, kv->val, value_type_sizes[kv->type]);
    }
}

void gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                            const uint64_t *ne, const void *data) {
    MH_ASSERT(n_dims >= 1 && n_dims <= GGUF_MAX_DIMS && strlen(name) <= GGUF_MAX_NAME);
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? w->cap_tensors * 2 : 16;
        w->tensors = mh_xrealloc(w->tensors, (size_t)w->cap_tensors * sizeof *w->tensors);
    }
    writer_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    uint64_t rows = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d > 0) rows *= t->ne[d];
    }
    t->nbytes = ggml_row_size(type, t->ne[0]) * rows;
    t->data = mh_xmalloc(t->nbytes);
    memcpy(t->data, data, t->nbytes);
}

int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen) {
    const uint32_t align = GGUF_DEFAULT_ALIGNMENT;
    bytes head = {0};
    bytes_put(&head, "GGUF", 4);
    bytes_u32(&head, 3);
    bytes_u64(&head, (uint64_t)w->n_tensors);
    bytes_u64(&head, w->n_kv);
    bytes_put(&head, w->kv.buf, w->kv.len);
    uint64_t off = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        bytes_str(&head, t->name, strlen(t->name));
        bytes_u32(&head, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) bytes_u64(&head, t->ne[d]);
        bytes_u32(&head, t->type);
        bytes_u64(&head, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    static const uint8_t zeros[64];
    while (head.len % align) bytes_put(&head, zeros, 1);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(head.buf);
        return snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno)), -1;
    }
    int ok = fwrite(head.buf, 1, head.len, fp) == head.len;
    for (int i = 0; ok && i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        ok = fwrite(t->data, 1, t->nbytes, fp) == t->nbytes;
        size_t pad = (size_t)((align - t->nbytes % align) % align);
        if (ok && pad) ok = fwrite(zeros, 1, pad, fp) == pad;
    }
    free(head.buf);
    if (fclose(fp) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
