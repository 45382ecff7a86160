// `test-table-bomb` (test only): grows a table until the host refuses, as a hostile plugin
// would to exhaust host memory outside the memory limit. Written in C because clang can
// declare a table and grow it (`__builtin_wasm_table_grow`, reference types); Rust cannot.
//
// No params. `run` grows by STEP elements until `table.grow` fails, and returns
// `{"grown": elements}` if the host let it fail instead of ending the call; the host ends
// the call when its tables pass their cap.

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

// A table of host references, empty at start: only `table.grow` can make it larger.
static __externref_t table[0];

// Elements added per `table.grow`.
#define STEP 65536

static const char PARAMS_SCHEMA[] = "{\"type\":\"object\",\"additionalProperties\":false}";

void exports_plugin_describe(plugin_info_t *ret) {
    memset(ret, 0, sizeof *ret);
    plugin_string_dup(&ret->task_type, "test-table-bomb");
    plugin_string_dup(&ret->version, "0.1.0");
    plugin_string_dup(&ret->description, "Grows a table until refused (test only)");
    plugin_string_dup(&ret->params_schema, PARAMS_SCHEMA);
    ret->default_timeout_ms.is_some = true;
    ret->default_timeout_ms.val = 30000;
}

bool exports_plugin_validate(plugin_string_t *text, plugin_string_t *err) {
    (void)err;
    plugin_string_free(text);
    return true;
}

bool exports_plugin_run(plugin_context_t *ctx, plugin_string_t *text, plugin_string_t *ret,
                        plugin_task_error_t *err) {
    (void)err;
    plugin_string_free(text);
    plugin_context_free(ctx);
    while (__builtin_wasm_table_grow(table, __builtin_wasm_ref_null_extern(), STEP) != -1) {
    }
    char *json = malloc(32);
    if (!json) abort();
    int len = snprintf(json, 32, "{\"grown\":%zu}", (size_t)__builtin_wasm_table_size(table));
    ret->ptr = (uint8_t *)json;
    ret->len = (size_t)len;
    return true;
}
