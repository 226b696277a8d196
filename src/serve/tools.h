/* tools.h — OpenAI function calling for models that read and write only text.
 *
 * A request's `tools` are written into the prompt in the way the model's chat template family was
 * trained on, and calls are read back out of the generated text:
 *
 *   hermes  (ChatML templates: Qwen 2.5/3 and the Hermes models) — the tools as JSON lines inside
 *           <tools></tools> in the system message; a call is
 *           <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>; results come back as a
 *           user turn of <tool_response>...</tool_response> blocks.
 *   llama3  (Llama 3.x) — the tools in the system message; a call is the JSON object
 *           {"name": ..., "parameters": {...}} alone; results are turns of the "ipython" role.
 *   generic (every other family) — the tools in the system message; a call is the JSON object
 *           {"name": ..., "arguments": {...}} alone; results are user turns naming the call.
 *
 * With tool_choice "required" or a named function the reply must be a call: the call's opening
 * (tools_forced_prefix) ends the prompt and generation is constrained to tools_call_schema().
 * With "auto" the model chooses; text that does not parse as a call of a declared function is
 * plain content. "none" renders the tools (so the model knows them) and reads no calls.
 *
 * Pure functions over jansson values: any thread.
 */
#ifndef MH_TOOLS_H
#define MH_TOOLS_H

#include <stddef.h>

#include <jansson.h>

#include "engine/chat.h"
#include "http/http_json.h"
#include "util/common.h"

enum tools_choice { TOOLS_NONE, TOOLS_AUTO, TOOLS_REQUIRED, TOOLS_NAMED };

typedef enum tools_style {
    TOOLS_STYLE_HERMES,
    TOOLS_STYLE_LLAMA3,
    TOOLS_STYLE_GENERIC
} tools_style;

typedef struct tools_request {
    const json_t *tools; /* the validated "tools" array (borrowed); NULL: no tools */
    int choice;          /* enum tools_choice; TOOLS_NONE when there are no tools */
    const char *named;   /* TOOLS_NAMED: the function (borrowed) */
    int parallel;        /* parallel_tool_calls: more than one call may be read back */
} tools_request;

/* Validate `tools`, `tool_choice` and `parallel_tool_calls` of a chat request body into *out
 * (borrowing from body). 0, or -1 with a 400 naming the field (e.g. "tools[1].function.name"). */
int tools_parse_request(const json_t *body, tools_request *out, http_error *e);

/* Validate the tool parts of message `i` (already known to be an object with a string role):
 * an assistant's `tool_calls`, a tool message's `tool_call_id` and content. 0 or -1 with a 400
 * naming "messages[i]...". */
int tools_check_message(const json_t *m, size_t i, http_error *e);

tools_style tools_style_for(chat_family family);
const char *tools_style_name(tools_style style);

/* The conversation as chat_format() messages for `style`: content parts flattened, "developer"
 * as "system", the tools added to the system message (one is inserted first when there is none),
 * past calls written as the style writes them, tool results as the style's turns. */
typedef struct tools_prompt {
    chat_message *msgs;
    size_t n;
    char **owned; /* strings the messages point into */
    size_t n_owned;
} tools_prompt;
void tools_build_messages(const json_t *messages, const tools_request *tr, tools_style style,
                          tools_prompt *out);
void tools_prompt_free(tools_prompt *p);

/* Text that opens a call in this style ("<tool_call>\n" for hermes, "" for the JSON styles):
 * appended to the prompt when a call is forced. */
const char *tools_forced_prefix(tools_style style);

/* JSON schema of one call of the functions tool_choice allows: an object with the function's
 * name as a const and its parameters schema (an anyOf over the functions). New reference. */
json_t *tools_call_schema(const tools_request *tr, tools_style style);

/* Read generated text back: content (the text outside the calls) into `content`, and *calls a
 * new array of OpenAI tool calls ({id, type: "function", function: {name, arguments}}, arguments
 * a compact JSON string; ids id_prefix + "_" + index), or NULL when the text holds no call of a
 * declared function (then content is the whole text). `forced`: the prompt ended with
 * tools_forced_prefix(), so the text starts inside the first call. */
void tools_parse_output(const tools_request *tr, tools_style style, int forced, const char *text,
                        size_t len, const char *id_prefix, mh_buf *content, json_t **calls);

/* Streaming with tool_choice auto: how many leading bytes of the text generated so far can be
 * shown as content now. Holds back what may be the start of a call; *in_call is set once a call
 * has begun (everything from the returned length on is held until the end). */
size_t tools_stream_safe(tools_style style, const char *text, size_t len, int *in_call);

#endif
