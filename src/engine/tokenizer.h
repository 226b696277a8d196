/* tokenizer.h — text <-> token ids for the vocabularies GGUF files carry.
 *
 * Backends (chosen by `tokenizer.ggml.model`):
 *   "llama" — SentencePiece-style: scores, byte fallback <0xNN>, dummy-prefix space, U+2581 as
 * space. "gpt2"  — byte-level BPE: merges (`tokenizer.ggml.merges`, lowest rank first), the GPT-2
 *             byte <-> character mapping, and the pre-tokenizer named by `tokenizer.ggml.pre`
 *             (gpt-2, llama-bpe, qwen2, smollm, starcoder, falcon, deepseek-coder, default and
 *             the names llama.cpp treats as one of these; see unicode.h).
 * A tokenizer is immutable once loaded and may be used from many threads at once. It may point
 * into the gguf mapping it was loaded from: keep that open as long as the tokenizer lives.
 */
#ifndef MH_TOKENIZER_H
#define MH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct tokenizer tokenizer;

/* Build the tokenizer of an open GGUF file. Returns 0, or -1 with `err` naming the problem
 * (missing key, unsupported model type, token id out of range, ...). */
int tokenizer_load(const gguf *f, tokenizer **out, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

int tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t); /* -1 when the model has none */
int32_t tokenizer_eos(const tokenizer *t);
/* Whether encoding with add_special prepends BOS (tokenizer.ggml.add_bos_token; SPM default yes).
 */
int tokenizer_adds_bos(const tokenizer *t);
/* Whether generation should stop at this token (EOS, EOT, <|im_end|> and the like). */
int tokenizer_is_eog(const tokenizer *t, int32_t id);
/* Whether `id` is a control/special token (rendered as "" in normal output). */
int tokenizer_is_control(const tokenizer *t, int32_t id);

/* Encode `len` bytes of `text`. add_special: prepend BOS when the model wants it.
 * parse_special: text such as "<|im_start|>" that spells a control token becomes that token.
 * Writes at most `max` ids to `out` and returns the total count (call again with a bigger buffer
 * when it exceeds `max`), or -1 on an internal error. Invalid UTF-8 is tokenized byte-wise by
 * SPM vocabularies; BPE vocabularies read each invalid byte as U+FFFD, as llama.cpp does. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special,
                     int parse_special, int32_t *out, int max);

/* The bytes token `id` stands for: byte tokens give their byte, U+2581 becomes ' ' (SPM), the
 * byte-level characters of BPE tokens become the bytes they spell. Control
 * tokens give "" unless render_special. Writes at most `cap` bytes and returns the full length,
 * or -1 for an id out of range. Not NUL-terminated. */
int tokenizer_piece(const tokenizer *t, int32_t id, int render_special, char *buf, size_t cap);

/* Incremental detokenizer for streaming: pieces go in, only complete UTF-8 sequences come out,
 * so a streamed chunk never splits a multi-byte character. Plain data: zero it to start. */
typedef struct tokenizer_stream {
    unsigned char pending[8];
    int n_pending;
} tokenizer_stream;

/* Append the text of `id`; writes the bytes now safe to emit into out (cap >= 64 + longest piece
 * is always enough) and returns their count. */
size_t tokenizer_stream_push(tokenizer_stream *s, const tokenizer *t, int32_t id, char *out,
                             size_t cap);
/* At the end of a stream: bytes still pending (an incomplete sequence) come out as U+FFFD. */
size_t tokenizer_stream_flush(tokenizer_stream *s, char *out, size_t cap);

/* ==== Lookups and sizes ==== */

/* Id of the token whose text is exactly text[0..len) (any type), or -1. */
int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len);
/* Longest tokenizer_piece() output of this vocabulary, in bytes (render_special on). */
size_t tokenizer_max_piece(const tokenizer *t);
/* A `cap` for tokenizer_stream_push that is enough for any id, even for vocabularies whose
 * pieces are not valid UTF-8 (each invalid byte becomes the 3 bytes of U+FFFD). For pieces that
 * are valid UTF-8 (every real vocabulary) 64 + longest piece is enough, as said above; with a
 * smaller cap, output that does not fit is dropped, never written past cap. */
size_t tokenizer_stream_cap(const tokenizer *t);

#endif
