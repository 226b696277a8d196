/* gguf.h — read GGUF files (v2, v3) by mmap, zero-copy, and write them.
 *
 * File layout (little-endian), field by field:
 *   u32 magic "GGUF" · u32 version (2|3) · u64 n_tensors · u64 n_kv
 *   n_kv × { string key · u32 value_type · value }
 *       string = u64 length + bytes (no NUL); array = u32 elem_type · u64 count · elements
 *   n_tensors × { string name · u32 n_dims · n_dims × u64 ne · u32 ggml_type · u64 offset }
 *   padding to `general.alignment` (u32, default 32) · tensor data (offsets relative to here)
 *
 * Every offset, size, count and string length is checked against the file size before use:
 * a truncated or corrupt file is a returned error that names what is wrong, never a crash.
 * Strings returned point into the mapping and are NOT NUL-terminated (use gguf_str).
 */
#ifndef MH_GGUF_H
#define MH_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum gguf_value_type {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
};

/* ggml tensor types (the ids GGUF stores). Only some are supported by the engine. */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 40
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          64

typedef struct gguf_str {
    const char *ptr; /* into the mapping, not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;      /* enum gguf_value_type */
    uint32_t arr_type;  /* element type when type == GGUF_VT_ARRAY */
    uint64_t arr_n;     /* element count when type == GGUF_VT_ARRAY */
    const uint8_t *val; /* the value's bytes (for arrays: the first element) */
} gguf_kv;

typedef struct gguf_tensor {
    char name[GGUF_MAX_NAME + 1];
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length) */
    uint32_t type;              /* enum ggml_type */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    const void *data; /* into the mapping */
} gguf_tensor;

typedef struct gguf gguf;

/* Map and parse `path`. On success *out owns the mapping; free with gguf_close().
 * On failure returns -1, *out stays NULL and `err` holds "<what is wrong>" (without the path). */
int gguf_open(const char *path, gguf **out, char *err, size_t errlen);
/* Parse an in-memory buffer the caller keeps alive (used by the fuzzer). */
int gguf_open_memory(const void *buf, size_t size, gguf **out, char *err, size_t errlen);
void gguf_close(gguf *f);

uint32_t gguf_version(const gguf *f);
uint32_t gguf_alignment(const gguf *f);
uint64_t gguf_file_size(const gguf *f);
uint64_t gguf_data_offset(const gguf *f);
const uint8_t *gguf_base(const gguf *f);

int gguf_n_kv(const gguf *f);
const gguf_kv *gguf_kv_at(const gguf *f, int i);
/* Index of `key`, or -1. */
int gguf_find_key(const gguf *f, const char *key);

/* Typed getters. Each returns 0 on success, -1 when the key is absent, -2 when its type does not
 * fit (integers of any width convert when the value is in range; floats accept f32/f64). */
int gguf_get_u32(const gguf *f, const char *key, uint32_t *out);
int gguf_get_i64(const gguf *f, const char *key, int64_t *out);
int gguf_get_f32(const gguf *f, const char *key, float *out);
int gguf_get_bool(const gguf *f, const char *key, int *out);
int gguf_get_str(const gguf *f, const char *key, gguf_str *out);
/* An array `key` of element type `elem_type`: *n gets its count, *kv the entry. */
int gguf_get_arr(const gguf *f, const char *key, uint32_t elem_type, const gguf_kv **kv);

/* Fill out[0..kv->arr_n) with the strings of a string array (walks it once). */
int gguf_arr_strings(const gguf_kv *kv, gguf_str *out);
/* Element i of a numeric array as double (any numeric element type). */
double gguf_arr_num(const gguf_kv *kv, uint64_t i);

int gguf_n_tensors(const gguf *f);
const gguf_tensor *gguf_tensor_at(const gguf *f, int i);
const gguf_tensor *gguf_find_tensor(const gguf *f, const char *name);

/* Names and sizes of value and tensor types. */
const char *gguf_value_type_name(uint32_t type);
const char *ggml_type_name(uint32_t type);
/* Bytes per block and elements per block; 0 for unknown types. */
size_t ggml_type_size(uint32_t type);
size_t ggml_blck_size(uint32_t type);
/* Bytes of a row of n elements (n must be a multiple of the block size). */
size_t ggml_row_size(uint32_t type, uint64_t n);
/* Type id for a name such as "f16" or "q8_0" (case-insensitive); -1 when unknown. */
int ggml_type_from_name(const char *name);

/* ==== Writer ==== */

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Metadata setters copy their arguments. Keys are written in the order they are set. */
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Copy a key/value (any type, arrays included) from an open file. */
void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
void gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
void gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Add a tensor; the data is copied (nbytes = ggml_row_size(type, ne0) * rows). */
void gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                            const uint64_t *ne, const void *data);
/* Write version 3 with the given alignment. Returns 0 or -1 with `err` set. */
int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
