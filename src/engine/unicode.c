/* unicode.c — code point classes, llama.cpp-compatible UTF-8 reading, the GPT-2 byte mapping and
 * the BPE pre-tokenizers. See unicode.h for the contract.
 *
 * The pre-tokenizers follow llama.cpp (llama-vocab.cpp lists the expressions per pre-tokenizer,
 * unicode.cpp runs them), rule for rule, so that the words and hence the ids agree:
 *   - GPT-2, Llama 3 and Qwen 2 expressions are run as llama.cpp's hand-written versions of them
 *     run: only a literal ' ' is the optional space of " ?\p{L}+", contractions are ASCII
 *     (case-insensitive for Llama 3 / Qwen 2), and a lookahead never sees past the word being
 *     split;
 *   - the other expressions run as ECMAScript regexes over the text with each code point
 *     reduced to its class; each step splits every word of the previous one, and both matches
 *     and the text between them are kept as words.
 * For ASCII, \p{L} is A-Za-z, \p{N} 0-9, \p{P} the 23 characters !"#%&'()*,-./:;?@[\]_{}, and
 * \s is \t\n\v\f\r and ' '; beyond ASCII the classes come from the generated table.
 */
#include "engine/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "engine/unicode_data.h"

/* ==== Classes ==== */

unsigned unicode_flags(uint32_t cp) {
    if (cp > 0x10ffff) return UNICODE_UNASSIGNED;
    size_t lo = 0, hi = unicode_class_ranges_n; /* last entry whose start <= cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((unicode_class_ranges[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return unicode_class_ranges[lo] & 0xff;
}

const char *unicode_version(void) {
    return unicode_data_version;
}

/* ==== UTF-8 ==== */

uint32_t unicode_decode(const unsigned char *s, size_t n, size_t *len) {
    unsigned char b = s[0];
    size_t need;
    uint32_t cp;
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if ((b & 0xe0) == 0xc0)
        need = 1, cp = b & 0x1f;
    else if ((b & 0xf0) == 0xe0)
        need = 2, cp = b & 0x0f;
    else if ((b & 0xf8) == 0xf0)
        need = 3, cp = b & 0x07;
    else
        goto invalid; /* a continuation byte, or 0xf8..0xff */
    if (n <= need) goto invalid;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xc0) != 0x80) goto invalid;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp > 0x10ffff) goto invalid;
    *len = need + 1;
    return cp;
invalid:
    *len = 1;
    return 0xfffd;
}

size_t unicode_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ==== GPT-2 byte-level mapping ==== */

/* Bytes that stand for themselves. */
static int byte_is_printable(uint32_t b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* The others, numbered from U+0100 in byte order: 0x00..0x20 (33), 0x7f..0xa0 (34), 0xad. */
uint32_t unicode_byte_to_cp(uint8_t byte) {
    if (byte_is_printable(byte)) return byte;
    if (byte <= 0x20) return 0x100 + byte;
    if (byte <= 0xa0) return 0x100 + 33 + (byte - 0x7fu);
    return 0x100 + 33 + 34; /* 0xad */
}

int unicode_cp_to_byte(uint32_t cp) {
    if (cp <= 0xff) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 33 + 34) return (int)(0x7f + cp - (0x100 + 33));
    if (cp == 0x100 + 33 + 34) return 0xad;
    return -1;
}

/* ==== Pre-tokenizers ==== */

/* Flags of a position past the end of the word being split: no class, no space, and unlike
 * every real code point (even an unassigned one) it is not "something". */
#define FLAG_END 0x80u

typedef struct split_ctx {
    const uint32_t *cp;
    const uint8_t *fl;
    unicode_span *out;
    size_t n_out;
} split_ctx;

static int is_letter(unsigned f) {
    return (f & UNICODE_CLASS_MASK) == UNICODE_LETTER;
}
static int is_number(unsigned f) {
    return (f & UNICODE_CLASS_MASK) == UNICODE_NUMBER;
}
static int is_punct(unsigned f) {
    return (f & UNICODE_CLASS_MASK) == UNICODE_PUNCTUATION;
}
static int is_space(unsigned f) {
    return (f & UNICODE_SPACE_FLAG) != 0;
}
/* [^\s\p{L}\p{N}] for a position inside the word. */
static int is_other(unsigned f) {
    return f != FLAG_END && !is_space(f) && !is_letter(f) && !is_number(f);
}
static int is_newline(uint32_t c) {
    return c == '\r' || c == '\n';
}
static uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static void emit(split_ctx *x, size_t start, size_t end) {
    if (end > start) x->out[x->n_out++] = (unicode_span){(uint32_t)start, (uint32_t)(end - start)};
}

/* Length of the contraction 's 't 're 've 'm 'll 'd at pos, or 0. */
static size_t contraction(const uint32_t *cp, size_t pos, size_t end, int any_case) {
    if (cp[pos] != '\'' || pos + 1 >= end) return 0;
    uint32_t a = any_case ? ascii_lower(cp[pos + 1]) : cp[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t b = any_case ? ascii_lower(cp[pos + 2]) : cp[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Whitespace at pos: \s+(?!\S) leaves the last space to the word that follows, \s+ at the end
 * of the word takes them all; a lone non-space character is a word of its own. */
static size_t space_run_end(const split_ctx *x, size_t pos, size_t end) {
    size_t i = pos;
    while (i < end && is_space(x->fl[i])) i++;
    if (i - pos > 1 && i < end) return i - 1;
    return i > pos ? i : pos + 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(split_ctx *x, size_t start, size_t end) {
    const uint32_t *cp = x->cp;
    const uint8_t *fl = x->fl;
    for (size_t pos = start; pos < end;) {
        size_t stop = pos + contraction(cp, pos, end, 0);
        if (stop == pos) {
            size_t p = pos + (cp[pos] == ' ');
            unsigned f = p < end ? fl[p] : FLAG_END;
            stop = p;
            if (is_letter(f))
                while (stop < end && is_letter(fl[stop])) stop++;
            else if (is_number(f))
                while (stop < end && is_number(fl[stop])) stop++;
            else if (is_other(f))
                while (stop < end && is_other(fl[stop])) stop++;
            else
                stop = space_run_end(x, pos, end);
        }
        emit(x, pos, stop);
        pos = stop;
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   with D = 3 (Llama 3) or 1 (Qwen 2). */
static void split_llama3(split_ctx *x, size_t start, size_t end, size_t max_digits) {
    const uint32_t *cp = x->cp;
    const uint8_t *fl = x->fl;
    for (size_t pos = start; pos < end;) {
        uint32_t c = cp[pos];
        unsigned f = fl[pos];
        size_t stop = pos + contraction(cp, pos, end, 1);
        if (stop > pos) {
            emit(x, pos, stop);
            pos = stop;
            continue;
        }
        if (!is_newline(c) && !is_number(f) &&
            (is_letter(f) || (pos + 1 < end && is_letter(fl[pos + 1])))) {
            stop = pos + 1;
            while (stop < end && is_letter(fl[stop])) stop++;
            emit(x, pos, stop);
            pos = stop;
            continue;
        }
        if (is_number(f)) {
            size_t run = pos;
            while (run < end && is_number(fl[run])) run++;
            for (; pos < run; pos = stop) {
                stop = run - pos > max_digits ? pos + max_digits : run;
                emit(x, pos, stop);
            }
            continue;
        }
        unsigned f2 = c == ' ' ? (pos + 1 < end ? fl[pos + 1] : FLAG_END) : f;
        if (!is_space(f2) && !is_letter(f2) && !is_number(f2)) {
            stop = pos + (c == ' ');
            while (stop < end && is_other(fl[stop])) stop++;
            while (stop < end && is_newline(cp[stop])) stop++;
            emit(x, pos, stop);
            pos = stop;
            continue;
        }
        size_t i = pos, after_newline = 0;
        for (; i < end && is_space(fl[i]); i++)
            if (is_newline(cp[i])) after_newline = i + 1;
        stop = after_newline ? after_newline : space_run_end(x, pos, end);
        emit(x, pos, stop);
        pos = stop;
    }
}

/* Single-pattern steps, run like std::regex_iterator: the leftmost match, then the next one
 * after it; the text between matches is kept as words too. Each returns the length of its
 * match at pos (0: none there). */
typedef size_t (*match_fn)(const split_ctx *x, size_t pos, size_t end);

/* \p{N} */
static size_t match_number(const split_ctx *x, size_t pos, size_t end) {
    (void)end;
    return is_number(x->fl[pos]);
}

/* \p{N}+ */
static size_t match_numbers(const split_ctx *x, size_t pos, size_t end) {
    size_t i = pos;
    while (i < end && is_number(x->fl[i])) i++;
    return i - pos;
}

/* [0-9][0-9][0-9] */
static size_t match_three_digits(const split_ctx *x, size_t pos, size_t end) {
    if (end - pos < 3) return 0;
    for (size_t i = pos; i < pos + 3; i++)
        if (x->cp[i] < '0' || x->cp[i] > '9') return 0;
    return 3;
}

static int is_ascii_symbol(uint32_t c, int backtick) {
    switch (c) {
    case '$':
    case '+':
    case '<':
    case '=':
    case '>':
    case '^':
    case '~':
    case '|': return 1;
    case '`': return backtick;
    default: return 0;
    }
}

/* [\p{P}\$\+<=>\^~\|`]+ (falcon) */
static size_t match_punct_falcon(const split_ctx *x, size_t pos, size_t end) {
    size_t i = pos;
    while (i < end && (is_punct(x->fl[i]) || is_ascii_symbol(x->cp[i], 1))) i++;
    return i - pos;
}

/* [\p{P}\$\+<=>\^~\|]+ (default) */
static size_t match_punct_default(const split_ctx *x, size_t pos, size_t end) {
    size_t i = pos;
    while (i < end && (is_punct(x->fl[i]) || is_ascii_symbol(x->cp[i], 0))) i++;
    return i - pos;
}

/* [\r\n] */
static size_t match_newline(const split_ctx *x, size_t pos, size_t end) {
    (void)end;
    return is_newline(x->cp[pos]);
}

/* \s?\p{L}+ and \s?\p{P}+ (no space character is a letter or punctuation) */
static size_t match_space_then(const split_ctx *x, size_t pos, size_t end, unsigned cls) {
    size_t first = pos + (is_space(x->fl[pos]) ? 1 : 0), i = first;
    while (i < end && (x->fl[i] & UNICODE_CLASS_MASK) == cls) i++;
    return i > first ? i - pos : 0;
}
static size_t match_space_letters(const split_ctx *x, size_t pos, size_t end) {
    return match_space_then(x, pos, end, UNICODE_LETTER);
}
static size_t match_space_punct(const split_ctx *x, size_t pos, size_t end) {
    return match_space_then(x, pos, end, UNICODE_PUNCTUATION);
}

/* [一-龥ࠀ-一가-퟿]+, i.e. U+0800..U+9FA5 and U+AC00..U+D7FF; llama.cpp hands this pattern
 * the text with every non-ASCII space replaced by \v, so U+3000 and friends are not in it. */
static size_t match_cjk(const split_ctx *x, size_t pos, size_t end) {
    size_t i = pos;
    for (; i < end && !is_space(x->fl[i]); i++) {
        uint32_t c = x->cp[i];
        if (!((c >= 0x800 && c <= 0x9fa5) || (c >= 0xac00 && c <= 0xd7ff))) break;
    }
    return i - pos;
}

static void split_matches(split_ctx *x, match_fn match, size_t start, size_t end) {
    size_t gap = start;
    for (size_t pos = start; pos < end;) {
        size_t n = match(x, pos, end);
        if (n == 0) {
            pos++;
            continue;
        }
        emit(x, gap, pos);
        emit(x, pos, pos + n);
        pos += n;
        gap = pos;
    }
    emit(x, gap, end);
}

enum split_step {
    STEP_END,
    STEP_GPT2,
    STEP_LLAMA3,
    STEP_QWEN2,
    STEP_NUMBER,
    STEP_NUMBERS,
    STEP_THREE_DIGITS,
    STEP_PUNCT_FALCON,
    STEP_PUNCT_DEFAULT,
    STEP_NEWLINE,
    STEP_SPACE_LETTERS,
    STEP_SPACE_PUNCT,
    STEP_CJK,
};

/* The steps of each pre-tokenizer, in order (llama-vocab.cpp's regex_exprs). */
static const uint8_t pretok_steps[][6] = {
    [UNICODE_PRETOK_DEFAULT] = {STEP_PUNCT_DEFAULT, STEP_GPT2, STEP_NUMBERS, STEP_THREE_DIGITS},
    [UNICODE_PRETOK_GPT2] = {STEP_GPT2},
    [UNICODE_PRETOK_LLAMA3] = {STEP_LLAMA3},
    [UNICODE_PRETOK_QWEN2] = {STEP_QWEN2},
    [UNICODE_PRETOK_STARCODER] = {STEP_NUMBER, STEP_GPT2},
    [UNICODE_PRETOK_FALCON] = {STEP_PUNCT_FALCON, STEP_GPT2, STEP_THREE_DIGITS},
    [UNICODE_PRETOK_DEEPSEEK_CODER] = {STEP_NEWLINE, STEP_SPACE_LETTERS, STEP_SPACE_PUNCT, STEP_CJK,
                                       STEP_NUMBER},
};

static void run_step(split_ctx *x, enum split_step step, size_t start, size_t end) {
    switch (step) {
    case STEP_GPT2: split_gpt2(x, start, end); break;
    case STEP_LLAMA3: split_llama3(x, start, end, 3); break;
    case STEP_QWEN2: split_llama3(x, start, end, 1); break;
    case STEP_NUMBER: split_matches(x, match_number, start, end); break;
    case STEP_NUMBERS: split_matches(x, match_numbers, start, end); break;
    case STEP_THREE_DIGITS: split_matches(x, match_three_digits, start, end); break;
    case STEP_PUNCT_FALCON: split_matches(x, match_punct_falcon, start, end); break;
    case STEP_PUNCT_DEFAULT: split_matches(x, match_punct_default, start, end); break;
    case STEP_NEWLINE: split_matches(x, match_newline, start, end); break;
    case STEP_SPACE_LETTERS: split_matches(x, match_space_letters, start, end); break;
    case STEP_SPACE_PUNCT: split_matches(x, match_space_punct, start, end); break;
    case STEP_CJK: split_matches(x, match_cjk, start, end); break;
    case STEP_END: break;
    }
}

long unicode_split(unicode_splitter *s, enum unicode_pretok kind, const uint32_t *cps, size_t n,
                   const unicode_span **out) {
    *out = NULL;
    if (n == 0) return 0;
    if ((unsigned)kind >= sizeof pretok_steps / sizeof pretok_steps[0] || n > UINT32_MAX) return -1;
    if (n > s->cap) {
        uint8_t *fl = realloc(s->flags, n);
        if (fl) s->flags = fl;
        for (int k = 0; k < 2 && fl; k++) {
            unicode_span *w = realloc(s->words[k], n * sizeof *w);
            if (!w)
                fl = NULL;
            else
                s->words[k] = w;
        }
        if (!fl) return -1;
        s->cap = n;
    }
    for (size_t i = 0; i < n; i++) s->flags[i] = (uint8_t)unicode_flags(cps[i]);

    /* The first step splits the whole text; each later one every word of the one before. */
    unicode_span *words = s->words[0];
    size_t n_words = 1;
    words[0] = (unicode_span){0, (uint32_t)n};
    const uint8_t *steps = pretok_steps[kind];
    for (int k = 0; k < 6 && steps[k] != STEP_END; k++) {
        split_ctx x = {cps, s->flags, s->words[(k + 1) & 1], 0};
        for (size_t w = 0; w < n_words; w++)
            run_step(&x, steps[k], words[w].start, (size_t)words[w].start + words[w].len);
        words = x.out;
        n_words = x.n_out;
    }
    *out = words;
    return (long)n_words;
}

void unicode_splitter_free(unicode_splitter *s) {
    free(s->flags);
    free(s->words[0]);
    free(s->words[1]);
    memset(s, 0, sizeof *s);
}
