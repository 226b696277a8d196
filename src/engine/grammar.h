/* grammar.h — constrained sampling: a byte-level pushdown machine that only lets a generation
 * spell JSON matching a schema (OpenAI's response_format).
 *
 * A grammar is a set of rules, each a list of alternatives, each a sequence of byte sets and
 * references to other rules (context-free, like llama.cpp's GBNF). A parse in progress is a set
 * of stacks of positions in those sequences; a byte moves every stack whose top position admits
 * it and drops the others, so ambiguity (anyOf, optional properties) is followed in parallel.
 *
 * What the compiled JSON looks like (so that generation always ends): no whitespace but at most
 * one space after ',' and ':'; strings of at most GRAMMAR_MAX_STRING characters unless the schema
 * says maxLength; escapes \" \\ \/ \b \f \n \r \t only; integers of at most 15 digits; numbers
 * with at most 6 fraction digits and no exponent; object properties in the order the schema
 * declares them, the required ones always present. Schemas nest at most GRAMMAR_MAX_DEPTH deep.
 *
 * Threads: a compiled grammar and a grammar_vocab are immutable and may be shared; a
 * grammar_state belongs to one thread at a time.
 */
#ifndef MH_GRAMMAR_H
#define MH_GRAMMAR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"

#define GRAMMAR_MAX_DEPTH  12  /* nesting of schemas (objects, arrays, anyOf) */
#define GRAMMAR_MAX_STRING 256 /* characters of a string without maxLength */
#define GRAMMAR_MAX_ITEMS  256 /* minItems / maxItems above this are refused */

typedef struct grammar grammar;

/* Compile a JSON schema (the subset README.md lists). Returns 0, or -1 with `err` naming the
 * problem and where in the schema, e.g. "unsupported keyword 'pattern' at properties.name".
 * The schema is only read during the call. */
int grammar_from_schema(const json_t *schema, grammar **out, char *err, size_t errlen);
/* Any JSON object (response_format json_object). */
grammar *grammar_any_object(void);
/* A grammar is reference counted (one per request, shared by its n choices): retain adds a
 * reference, free drops one and frees on the last. Any thread. */
grammar *grammar_retain(grammar *g);
void grammar_free(grammar *g);

/* The vocabulary as byte strings sorted so that shared prefixes are walked once. Built once per
 * tokenizer; the tokenizer must outlive it. NULL on out of memory. */
typedef struct grammar_vocab grammar_vocab;
grammar_vocab *grammar_vocab_new(const tokenizer *t);
void grammar_vocab_free(grammar_vocab *v);

/* A parse in progress over a grammar (which it retains). NULL on out of memory. */
typedef struct grammar_state grammar_state;
grammar_state *grammar_state_new(grammar *g, const grammar_vocab *v);
void grammar_state_free(grammar_state *st);
/* Back to the start of the grammar. */
void grammar_state_reset(grammar_state *st);

/* Feed bytes: 0 when the machine accepts all of them (and has moved), -1 when it does not (the
 * state is then unchanged). */
int grammar_state_feed(grammar_state *st, const char *bytes, size_t len);
/* Whether the output so far is complete (end of generation allowed here). */
int grammar_state_accepting(const grammar_state *st);
/* Whether some further byte is allowed. Accepting and not continuable means: force the end. */
int grammar_state_continuable(const grammar_state *st);

/* Which tokens may come next: allow[id] = 1 for each token whose bytes the machine accepts
 * from here, and for end-of-generation tokens when accepting; 0 for the rest. `allow` holds the
 * vocabulary's n_vocab entries. Returns how many are allowed. */
int grammar_state_mask(grammar_state *st, uint8_t *allow);
/* Advance over token `id` (its bytes; an end-of-generation token changes nothing). 0, or -1
 * when the token is not allowed (state unchanged). */
int grammar_state_accept_token(grammar_state *st, int32_t id);

#endif
