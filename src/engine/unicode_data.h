/* unicode_data.h — the generated code point table behind unicode.c (see unicode_data.c and
 * scripts/gen-unicode-data.py). Only unicode.c reads it. */
#ifndef MH_UNICODE_DATA_H
#define MH_UNICODE_DATA_H

#include <stddef.h>
#include <stdint.h>

/* Sorted by first code point; entry = (first << 8) | class | (White_Space ? 8 : 0), valid up to
 * the next entry's first code point (the last one up to U+10FFFF). */
extern const uint32_t unicode_class_ranges[];
extern const size_t unicode_class_ranges_n;
/* The Unicode Character Database version the table was made from, e.g. "15.0.0". */
extern const char unicode_data_version[];

#endif
