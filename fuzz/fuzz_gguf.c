/* fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_open_memory() and, when it parses, walks everything a caller can
 * reach: every key through gguf_find_key and each typed getter, every string and array element
 * (gguf_arr_strings, gguf_arr_num), every tensor through gguf_find_tensor and its first and last
 * data byte, and a writer copy of every kv and tensor. Reads are checked by ASan; the reader's
 * promises (pointers inside the buffer, a message on every failure, aligned tensors) by abort().
 * See fuzz/README.md for how to run it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

static const uint8_t *lo, *hi; /* the input */
static volatile uint8_t sink;

/* [p, p+n) lies inside the input; touch its ends so ASan sees a bad pointer. */
static void touch(const void *p, uint64_t n) {
    const uint8_t *q = p;
    CHECK(q >= lo && q <= hi && n <= (uint64_t)(hi - q));
    if (n) sink ^= q[0] ^ q[n - 1];
}

static void walk_kv(const gguf *f, const gguf_kv *kv, int index, gguf_writer *w) {
    touch(kv->key.ptr, kv->key.len);
    char key[512];
    int named = kv->key.len < sizeof key && !memchr(kv->key.ptr, 0, kv->key.len);
    if (named) {
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        CHECK(gguf_find_key(f, key) == index); /* keys are unique */
        uint32_t u;
        int64_t i64;
        float fl;
        int bl;
        gguf_str s;
        const gguf_kv *arr;
        CHECK(gguf_get_u32(f, key, &u) != -1);
        CHECK(gguf_get_i64(f, key, &i64) != -1);
        CHECK(gguf_get_f32(f, key, &fl) != -1);
        CHECK(gguf_get_bool(f, key, &bl) != -1);
        int rc = gguf_get_str(f, key, &s);
        CHECK(rc == (kv->type == GGUF_VT_STRING ? 0 : -2));
        if (rc == 0) touch(s.ptr, s.len);
        rc = gguf_get_arr(f, key, kv->arr_type, &arr);
        CHECK(rc == (kv->type == GGUF_VT_ARRAY ? 0 : -2));
        CHECK(rc != 0 || arr == kv);
    }
    (void)gguf_value_type_name(kv->type);
    if (kv->type == GGUF_VT_ARRAY) {
        (void)gguf_value_type_name(kv->arr_type);
        if (kv->arr_type == GGUF_VT_STRING) {
            CHECK(kv->arr_n <= (uint64_t)(hi - lo) / 8);
            gguf_str *s = malloc((size_t)(kv->arr_n + 1) * sizeof *s);
            CHECK(s);
            CHECK(gguf_arr_strings(kv, s) == 0);
            for (uint64_t i = 0; i < kv->arr_n; i++) touch(s[i].ptr, s[i].len);
            free(s);
        } else {
            CHECK(gguf_arr_strings(kv, NULL) == -1);
            double sum = 0;
            for (uint64_t i = 0; i < kv->arr_n && i < 4096; i++) sum += gguf_arr_num(kv, i);
            if (kv->arr_n) sink ^= (uint8_t)(sum != sum);
            (void)gguf_arr_num(kv, kv->arr_n); /* one past the end gives 0 */
        }
    }
    gguf_writer_copy_kv(w, kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lo = data;
    hi = data + size;
    gguf *f = NULL;
    char err[512];
    err[0] = 0;
    if (gguf_open_memory(data, size, &f, err, sizeof err) < 0) {
        CHECK(f == NULL && err[0] != 0); /* a failure always says why */
        return 0;
    }
    CHECK(gguf_base(f) == data && gguf_file_size(f) == size);
    uint32_t align = gguf_alignment(f);
    CHECK(align != 0 && (align & (align - 1)) == 0 && gguf_data_offset(f) % align == 0);
    CHECK(gguf_n_kv(f) >= 0 && gguf_n_tensors(f) >= 0);
    CHECK(gguf_kv_at(f, gguf_n_kv(f)) == NULL && gguf_tensor_at(f, -1) == NULL);

    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < gguf_n_kv(f); i++) walk_kv(f, gguf_kv_at(f, i), i, w);
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        CHECK(memchr(t->name, 0, sizeof t->name) != NULL);
        CHECK(gguf_find_tensor(f, t->name) == t); /* names are unique */
        CHECK(ggml_blck_size(t->type) != 0 && t->ne[0] % ggml_blck_size(t->type) == 0);
        CHECK(t->nbytes == ggml_row_size(t->type, t->ne[0]) * t->ne[1] * t->ne[2] * t->ne[3]);
        CHECK((const uint8_t *)t->data == data + gguf_data_offset(f) + t->offset);
        CHECK(((const uint8_t *)t->data - data) % align == 0);
        touch(t->data, t->nbytes);
        (void)ggml_type_name(t->type);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    gguf_writer_free(w);
    gguf_close(f);
    return 0;
}
