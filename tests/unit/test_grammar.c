/* test_grammar.c — JSON schemas compiled to byte machines: what they accept, what they refuse,
 * which schemas give errors, and token masks over real vocabularies (random walks that must
 * always end in JSON that matches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/tokenizer.h"
#include "test_util.h"
#include "util/common.h"

static grammar *compile(const char *schema_text) {
    json_error_t je;
    json_t *sch = json_loads(schema_text, JSON_DECODE_ANY, &je);
    assert_non_null(sch);
    grammar *g = NULL;
    char err[256] = "";
    int rc = grammar_from_schema(sch, &g, err, sizeof err);
    json_decref(sch);
    if (rc < 0) fail_msg("compile failed: %s", err);
    return g;
}

/* The error a schema gives (or "" when it compiles). */
static const char *compile_error(const char *schema_text) {
    static char err[256];
    err[0] = 0;
    json_error_t je;
    json_t *sch = json_loads(schema_text, JSON_DECODE_ANY, &je);
    assert_non_null(sch);
    grammar *g = NULL;
    if (grammar_from_schema(sch, &g, err, sizeof err) == 0) {
        grammar_free(g);
        err[0] = 0;
    }
    json_decref(sch);
    return err;
}

/* 1 when the whole text is accepted and complete. */
static int matches(grammar *g, const char *text) {
    grammar_state *st = grammar_state_new(g, NULL);
    assert_non_null(st);
    int ok = grammar_state_feed(st, text, strlen(text)) == 0 && grammar_state_accepting(st);
    grammar_state_free(st);
    return ok;
}

static void test_any_object(void **state) {
    (void)state;
    grammar *g = grammar_any_object();
    assert_true(matches(g, "{}"));
    assert_true(matches(g, "{\"a\":1}"));
    assert_true(matches(g, "{\"a\": [1, 2.5, -3, true, null, \"x\"], \"b\":{\"c\":{}}}"));
    assert_true(matches(g, "{\"\\n\\\"\":\"caf\xc3\xa9\"}"));
    assert_false(matches(g, "[]"));
    assert_false(matches(g, "{"));
    assert_false(matches(g, "{\"a\":01}"));
    assert_false(matches(g, "{\"a\":1,}"));
    assert_false(matches(g, "{\"a\":  1}"));              /* two spaces */
    assert_false(matches(g, "{\"a\":\"\x01\"}"));         /* control character */
    assert_false(matches(g, "{\"a\":\"\xc0\xaf\"}"));     /* overlong UTF-8 */
    assert_false(matches(g, "{\"a\":\"\xed\xa0\x80\"}")); /* surrogate */
    assert_false(matches(g, "{} "));
    grammar_free(g);
}

static void test_schema_object(void **state) {
    (void)state;
    grammar *g = compile("{\"type\":\"object\",\"properties\":{"
                         "\"name\":{\"type\":\"string\",\"maxLength\":5},"
                         "\"age\":{\"type\":\"integer\"},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},"
                         "\"minItems\":1,\"maxItems\":2},"
                         "\"pet\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\","
                         "\"properties\":{\"kind\":{\"const\":\"cat\"}},\"required\":[\"kind\"]}]}"
                         "},\"required\":[\"name\",\"tags\"],\"additionalProperties\":false}");
    assert_true(matches(g, "{\"name\":\"bob\",\"tags\":[\"a\"]}"));
    assert_true(matches(g, "{\"name\": \"bob\", \"age\": -12, \"tags\": [\"a\", \"b\"]}"));
    assert_true(matches(g, "{\"name\":\"\",\"tags\":[\"b\"],\"pet\":null}"));
    assert_true(matches(g, "{\"name\":\"x\",\"tags\":[\"b\"],\"pet\":{\"kind\":\"cat\"}}"));
    assert_false(matches(g, "{\"tags\":[\"a\"]}"));                            /* name required */
    assert_false(matches(g, "{\"name\":\"bobbie\",\"tags\":[\"a\"]}"));        /* maxLength 5 */
    assert_false(matches(g, "{\"name\":\"b\",\"tags\":[]}"));                  /* minItems */
    assert_false(matches(g, "{\"name\":\"b\",\"tags\":[\"a\",\"a\",\"a\"]}")); /* maxItems */
    assert_false(matches(g, "{\"name\":\"b\",\"tags\":[\"c\"]}"));             /* enum */
    assert_false(matches(g, "{\"name\":\"b\",\"age\":1.5,\"tags\":[\"a\"]}")); /* integer */
    assert_false(matches(g, "{\"name\":\"b\",\"tags\":[\"a\"],\"pet\":{\"kind\":\"dog\"}}"));
    assert_false(matches(g, "{\"name\":\"b\",\"tags\":[\"a\"],\"x\":1}")); /* additional */
    grammar_free(g);

    g = compile("{\"type\":[\"number\",\"boolean\"]}");
    assert_true(matches(g, "3.25"));
    assert_true(matches(g, "false"));
    assert_false(matches(g, "3."));
    assert_false(matches(g, "\"3\""));
    grammar_free(g);

    g = compile("{\"$defs\":{\"p\":{\"type\":\"integer\"}},\"type\":\"array\","
                "\"items\":{\"$ref\":\"#/$defs/p\"}}");
    assert_true(matches(g, "[1, 2,3]"));
    assert_true(matches(g, "[]"));
    assert_false(matches(g, "[1,\"2\"]"));
    grammar_free(g);
}

static void test_schema_errors(void **state) {
    (void)state;
    assert_string_equal(compile_error("{\"type\":\"object\"}"), "");
    assert_non_null(strstr(compile_error("{\"type\":\"string\",\"pattern\":\"a+\"}"), "'pattern'"));
    assert_non_null(
        strstr(compile_error("{\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\"}}}"),
               "'format' at properties.d"));
    assert_non_null(strstr(compile_error("{\"type\":\"strnig\"}"), "'type'"));
    assert_non_null(strstr(compile_error("{\"type\":3}"), "'type'"));
    assert_non_null(strstr(compile_error("[1]"), "must be an object"));
    assert_non_null(strstr(compile_error("\"x\""), "must be an object"));
    assert_non_null(strstr(compile_error("{\"properties\":{\"a\":5}}"), "must be an object"));
    assert_non_null(strstr(compile_error("{\"required\":[\"a\"]}"), "'a'"));
    assert_non_null(strstr(compile_error("{\"enum\":[]}"), "'enum'"));
    assert_non_null(strstr(compile_error("{\"type\":\"array\",\"maxItems\":-1}"), "maxItems"));
    assert_non_null(strstr(compile_error("{\"$ref\":\"http://x/y\"}"), "'$ref'"));
    assert_non_null(strstr(compile_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},"
                                         "\"$ref\":\"#/$defs/a\"}"),
                           "deeper"));
    /* deeply nested: refused, not a crash */
    char deep[8192] = "";
    for (int i = 0; i < 300; i++) strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 300; i++) strcat(deep, "}");
    assert_non_null(strstr(compile_error(deep), "deeper"));
}

/* ==== Masks over real vocabularies ==== */

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Random walks through the mask: pick any allowed token; the text must always end complete
 * and parse. Checks the mask against feeding each token for the first steps. */
static void walk(const char *vocab_path, grammar *g, int n_walks, int check_schema) {
    gguf *f = NULL;
    char err[256];
    if (gguf_open(vocab_path, &f, err, sizeof err) < 0) {
        printf("skip: %s\n", err);
        skip();
    }
    tokenizer *t = NULL;
    assert_int_equal(tokenizer_load(f, &t, err, sizeof err), 0);
    grammar_vocab *v = grammar_vocab_new(t);
    assert_non_null(v);
    int n_vocab = tokenizer_n_vocab(t);
    uint8_t *allow = malloc((size_t)n_vocab);
    int32_t *ids = malloc((size_t)n_vocab * sizeof *ids);
    double t_mask = 0;
    long n_masks = 0;
    for (int w = 0; w < n_walks; w++) {
        grammar_state *st = grammar_state_new(g, v);
        assert_non_null(st);
        mh_buf out = {0};
        for (int step = 0; step < 4000; step++) {
            if (grammar_state_accepting(st) && !grammar_state_continuable(st)) break;
            double t0 = mh_now_mono();
            int n = grammar_state_mask(st, allow);
            t_mask += mh_now_mono() - t0;
            n_masks++;
            assert_true(n > 0);
            int k = 0;
            for (int id = 0; id < n_vocab; id++)
                if (allow[id]) ids[k++] = id;
            assert_int_equal(k, n);
            if (w == 0 && step < 3) /* the mask is exactly the tokens that feed */
                for (int id = 0; id < n_vocab; id++) {
                    char buf[1024];
                    int len = tokenizer_piece(t, id, 0, buf, sizeof buf);
                    if (tokenizer_is_eog(t, id) || len <= 0 || len > (int)sizeof buf) continue;
                    grammar_state *probe = grammar_state_new(g, v);
                    grammar_state_feed(probe, out.data ? out.data : "", out.len);
                    int fed = grammar_state_feed(probe, buf, (size_t)len) == 0;
                    grammar_state_free(probe);
                    assert_int_equal(fed, allow[id]);
                }
            /* prefer ending (half the time) once possible, so walks stay short */
            int32_t pick = ids[rnd() % (uint32_t)n];
            if (grammar_state_accepting(st) && rnd() % 2)
                for (int i = 0; i < n; i++)
                    if (tokenizer_is_eog(t, ids[i])) pick = ids[i];
            if (tokenizer_is_eog(t, pick)) break;
            assert_int_equal(grammar_state_accept_token(st, pick), 0);
            char buf[1024];
            int len = tokenizer_piece(t, pick, 0, buf, sizeof buf);
            mh_buf_append(&out, buf, (size_t)len);
        }
        assert_true(grammar_state_accepting(st));
        json_error_t je;
        json_t *doc = json_loadb(out.data, out.len, JSON_DECODE_ANY, &je);
        if (!doc) fail_msg("walk %d gave unparsable %s: %s", w, out.data, je.text);
        if (check_schema) { /* the schema of test_masks */
            assert_true(json_is_object(doc));
            assert_true(json_is_integer(json_object_get(doc, "id")));
            const char *color = json_string_value(json_object_get(doc, "color"));
            assert_non_null(color);
            assert_true(!strcmp(color, "red") || !strcmp(color, "green"));
            json_t *tags = json_object_get(doc, "tags");
            assert_true(json_is_array(tags) && json_array_size(tags) <= 3);
        }
        json_decref(doc);
        mh_buf_free(&out);
        grammar_state_free(st);
    }
    printf("%s: vocab %d, %ld masks, %.3f ms per mask\n", vocab_path, n_vocab, n_masks,
           n_masks ? 1e3 * t_mask / (double)n_masks : 0);
    free(allow);
    free(ids);
    grammar_vocab_free(v);
    tokenizer_free(t);
    gguf_close(f);
}

static const char *mask_schema =
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
    "\"color\":{\"enum\":[\"red\",\"green\"]},\"note\":{\"type\":\"string\",\"maxLength\":40},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},\"maxItems\":3}},"
    "\"required\":[\"id\",\"color\",\"tags\"]}";

static void test_masks(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/ggml-vocab-llama3.gguf",
             getenv("MODELHUB_SRC") ? getenv("MODELHUB_SRC") : ".");
    grammar *g = compile(mask_schema);
    walk(path, g, 6, 1);
    walk(test_model_path("stories260K.gguf"), g, 50, 1);
    walk(test_model_path("ggml-vocab-llama-spm.gguf"), g, 6, 1);
    grammar_free(g);
    g = grammar_any_object();
    walk(test_model_path("stories260K.gguf"), g, 50, 0);
    walk(path, g, 2, 0);
    grammar_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_object),
        cmocka_unit_test(test_schema_object),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_masks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
