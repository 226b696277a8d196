/* web.h — the dashboard files of web/, embedded into the binary at build time
 * (cmake/embed.cmake generates the table). */
#ifndef MH_HUB_WEB_H
#define MH_HUB_WEB_H

#include <stddef.h>

typedef struct web_asset {
    const char *name; /* file name in web/, e.g. "dashboard.html" */
    const unsigned char *data;
    size_t len;
} web_asset;

/* Ends with an entry whose name is NULL. */
extern const web_asset web_assets[];

#endif
