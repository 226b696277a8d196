/* log.h — levelled, printf-checked logging to stderr and an optional file.
 *
 * The level is checked before any formatting happens, so log_debug() costs one compare when
 * debug is off. Safe to call from any thread: each line is written with one write(2).
 */
#ifndef MH_LOG_H
#define MH_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level_current;

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Also append every line to `path` (opened O_APPEND). Returns 0 or -1 with errno set. */
int log_open_file(const char *path);
void log_close_file(void);

/* "error|warn|info|debug" -> level, or -1 when the name is unknown. */
int log_parse_level(const char *name);

/* Prefix every line with this tag, e.g. "serve" (copied; NULL for none). */
void log_set_tag(const char *tag);

#define log_error(...)                                                                             \
    do {                                                                                           \
        if (log_level_current >= LOG_ERROR) log_write(LOG_ERROR, __VA_ARGS__);                     \
    } while (0)
#define log_warn(...)                                                                              \
    do {                                                                                           \
        if (log_level_current >= LOG_WARN) log_write(LOG_WARN, __VA_ARGS__);                       \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_level_current >= LOG_INFO) log_write(LOG_INFO, __VA_ARGS__);                       \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_level_current >= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__);                     \
    } while (0)

#endif
