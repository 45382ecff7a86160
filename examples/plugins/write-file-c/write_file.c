// `write-file`: a planrt task type written in C (wit-bindgen c + wasi-libc + cJSON).
//
// Renders a template with {{name}} placeholders and writes it to a file under the granted
// `/files` directory — atomically (temp file, fsync, rename, fsync of the directory) and only
// when the content differs, so a repeated attempt changes nothing.
//
// Memory: arguments of exported functions belong to the callee (freed here); returned strings
// must be heap memory, which the generated post-return functions free. `run` gets a fresh
// instance per call; `validate` may be called many times on one instance (everything it
// allocates is freed here, and it answers from the params alone).

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cJSON.h"
#include "plugin.h"

#define ROOT "/files"

static const char PARAMS_SCHEMA[] =
    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
    "\"title\":\"write-file params\","
    "\"type\":\"object\","
    "\"properties\":{"
    "\"path\":{\"type\":\"string\",\"minLength\":1,"
    "\"description\":\"File to write, a relative path under /files (no '..').\"},"
    "\"template\":{\"type\":\"string\","
    "\"description\":\"Content, with {{name}} placeholders.\"},"
    "\"vars\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},"
    "\"description\":\"Values for the placeholders.\"}"
    "},"
    "\"required\":[\"path\",\"template\"],"
    "\"additionalProperties\":false}";

// ---------------------------------------------------------------- small helpers

// A growable byte buffer.
typedef struct {
    char *ptr;
    size_t len, cap;
} buf_t;

static bool buf_append(buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->ptr, cap);
        if (!p) return false;
        b->ptr = p;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return true;
}

// A heap string made with printf formatting (never NULL: aborts on out of memory, which
// traps the call; there is nothing better to do without memory).
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static void log_line(planrt_task_host_level_t level, const char *msg) {
    plugin_string_t s;
    plugin_string_set(&s, msg);  // borrowed for the call only
    planrt_task_host_log(level, &s);
}

// Moves a heap C string into a component string (freed by post-return).
static void take_string(plugin_string_t *out, char *s) {
    out->ptr = (uint8_t *)s;
    out->len = strlen(s);
}

// ---------------------------------------------------------------- params

typedef struct {
    cJSON *root;           // owns everything below
    const char *path;      // relative to ROOT
    const char *template_;
    const cJSON *vars;     // object of strings, or NULL
} params_t;

// A relative path of plain components: not absolute, no '', '.' or '..' component.
static char *check_path(const char *path) {
    if (path[0] == '\0') return fmt("path must not be empty");
    if (path[0] == '/') return fmt("path \"%s\" must be relative to " ROOT ", not absolute", path);
    if (strchr(path, '\\')) return fmt("path \"%s\" must not contain a backslash", path);
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return fmt("path \"%s\" must be plain components (no empty, '.' or '..')", path);
        if (!end) return NULL;
        p = end + 1;
    }
}

// Parses and checks params. On error returns a heap message; on success NULL and *out
// (free with cJSON_Delete(out->root)). The host has checked the schema already; this does
// not rely on it.
static char *parse_params(const plugin_string_t *text, params_t *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength((const char *)text->ptr, text->len);
    if (!root) return fmt("params are not JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fmt("params must be an object");
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "path") && strcmp(it->string, "template") && strcmp(it->string, "vars")) {
            char *e = fmt("unknown param \"%s\"", it->string);
            cJSON_Delete(root);
            return e;
        }
    }
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(root, "path");
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(root, "template");
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(root, "vars");
    char *err = NULL;
    if (!cJSON_IsString(path)) err = fmt("path must be a string");
    else if (!cJSON_IsString(tmpl)) err = fmt("template must be a string");
    else if (vars && !cJSON_IsObject(vars)) err = fmt("vars must be an object");
    else if ((err = check_path(path->valuestring)) != NULL) {}
    else if (vars) {
        for (const cJSON *v = vars->child; v; v = v->next)
            if (!cJSON_IsString(v)) { err = fmt("vars.%s must be a string", v->string); break; }
    }
    if (err) {
        cJSON_Delete(root);
        return err;
    }
    out->root = root;
    out->path = path->valuestring;
    out->template_ = tmpl->valuestring;
    out->vars = vars;
    return NULL;
}

// ---------------------------------------------------------------- rendering

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

// Replaces every {{name}} (spaces around the name allowed) with vars[name]. On error
// returns a heap message naming the placeholder.
static char *render(const params_t *p, buf_t *out) {
    const char *s = p->template_;
    for (;;) {
        const char *open = strstr(s, "{{");
        if (!open) {
            if (!buf_append(out, s, strlen(s))) abort();
            return NULL;
        }
        if (!buf_append(out, s, (size_t)(open - s))) abort();
        const char *close = strstr(open + 2, "}}");
        if (!close) return fmt("template has an unclosed \"{{\" at byte %zu", (size_t)(open - p->template_));
        const char *a = open + 2, *b = close;
        while (a < b && *a == ' ') a++;
        while (b > a && b[-1] == ' ') b--;
        size_t n = (size_t)(b - a);
        for (const char *c = a; c < b; c++)
            if (!name_char(*c))
                return fmt("template placeholder \"%.*s\" is not a name ([A-Za-z0-9_.-]+)",
                           (int)(close + 2 - open), open);
        if (n == 0) return fmt("template has an empty placeholder at byte %zu", (size_t)(open - p->template_));
        char *name = fmt("%.*s", (int)n, a);
        const cJSON *v = p->vars ? cJSON_GetObjectItemCaseSensitive(p->vars, name) : NULL;
        if (!v) {
            char *e = fmt("template placeholder {{%s}} is not defined in vars", name);
            free(name);
            return e;
        }
        free(name);
        if (!buf_append(out, v->valuestring, strlen(v->valuestring))) abort();
        s = close + 2;
    }
}

// ---------------------------------------------------------------- files

typedef enum { IO_OK, IO_TRANSIENT, IO_PERMANENT } io_kind_t;

// An errno that will come back on a retry: the tree has a file where a directory must
// be, or the other way round.
static io_kind_t kind_of(int err) {
    return (err == EISDIR || err == ENOTDIR || err == EEXIST) ? IO_PERMANENT : IO_TRANSIENT;
}

// Whether the file at `full` already holds exactly `want`. *same is false if it is missing.
static io_kind_t same_content(const char *full, const buf_t *want, bool *same, char **msg) {
    *same = false;
    int fd = open(full, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return IO_OK;
        *msg = fmt("opening %s: %s", full, strerror(e));
        return kind_of(e);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *msg = fmt("stat %s: %s", full, strerror(errno));
        close(fd);
        return IO_TRANSIENT;
    }
    if (!S_ISREG(st.st_mode)) {
        *msg = fmt("%s exists and is not a regular file", full);
        close(fd);
        return IO_PERMANENT;
    }
    if ((size_t)st.st_size != want->len) {
        close(fd);
        return IO_OK;
    }
    char chunk[4096];
    size_t at = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            *msg = fmt("reading %s: %s", full, strerror(errno));
            close(fd);
            return IO_TRANSIENT;
        }
        if (n == 0) break;
        if (at + (size_t)n > want->len || memcmp(want->ptr + at, chunk, (size_t)n) != 0) {
            close(fd);
            return IO_OK;
        }
        at += (size_t)n;
    }
    close(fd);
    *same = (at == want->len);
    return IO_OK;
}

// mkdir -p of every parent directory of `full` below ROOT.
static io_kind_t make_parents(const char *full, char **msg) {
    char *dir = fmt("%s", full);
    for (char *slash = strchr(dir + strlen(ROOT) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            *msg = fmt("creating directory %s: %s", dir, strerror(e));
            free(dir);
            return kind_of(e);
        }
        *slash = '/';
    }
    free(dir);
    return IO_OK;
}

// fsync of directory `dir` (an absolute guest path at or below ROOT), so that a rename in it
// is durable. wasi-libc's fsync() cannot do it here: the preview1 adapter's fd_sync refuses a
// directory descriptor (EBADF). So this calls wasi:filesystem directly: the preopen of ROOT,
// open-at of the directory, descriptor.sync.
static io_kind_t sync_dir(const char *dir, char **msg) {
    wasi_filesystem_preopens_list_tuple2_own_descriptor_string_t pre;
    wasi_filesystem_preopens_get_directories(&pre);
    io_kind_t kind = IO_OK;
    wasi_filesystem_types_error_code_t code = 0;
    bool found = false, ok = false;
    for (size_t i = 0; i < pre.len; i++) {
        const plugin_string_t *name = &pre.ptr[i].f1;
        if (found || name->len != strlen(ROOT) || memcmp(name->ptr, ROOT, name->len) != 0) continue;
        found = true;
        wasi_filesystem_types_borrow_descriptor_t root = wasi_filesystem_types_borrow_descriptor(pre.ptr[i].f0);
        const char *rel = dir + strlen(ROOT);
        if (*rel == '/') rel++;
        if (*rel == '\0') {
            ok = wasi_filesystem_types_method_descriptor_sync(root, &code);
        } else {
            plugin_string_t path;
            plugin_string_set(&path, rel);
            wasi_filesystem_types_own_descriptor_t d;
            ok = wasi_filesystem_types_method_descriptor_open_at(
                root, WASI_FILESYSTEM_TYPES_PATH_FLAGS_SYMLINK_FOLLOW, &path,
                WASI_FILESYSTEM_TYPES_OPEN_FLAGS_DIRECTORY, WASI_FILESYSTEM_TYPES_DESCRIPTOR_FLAGS_READ,
                &d, &code);
            if (ok) {
                ok = wasi_filesystem_types_method_descriptor_sync(wasi_filesystem_types_borrow_descriptor(d), &code);
                wasi_filesystem_types_descriptor_drop_own(d);
            }
        }
    }
    for (size_t i = 0; i < pre.len; i++) wasi_filesystem_types_descriptor_drop_own(pre.ptr[i].f0);
    wasi_filesystem_preopens_list_tuple2_own_descriptor_string_free(&pre);
    if (!found) {
        *msg = fmt("fsync of directory %s: no preopened " ROOT, dir);
        kind = IO_PERMANENT;
    } else if (!ok) {
        *msg = fmt("fsync of directory %s: wasi:filesystem error-code %u", dir, (unsigned)code);
        kind = IO_TRANSIENT;
    }
    return kind;
}

// Temp file with a unique name in the same directory, write, fsync, rename over `full`,
// fsync the directory.
static io_kind_t write_atomically(const char *full, const buf_t *data, const plugin_context_t *ctx, char **msg) {
    const char *slash = strrchr(full, '/');
    char *dir = fmt("%.*s", (int)(slash - full), full);
    unsigned char rnd[6];
    if (getentropy(rnd, sizeof rnd) != 0) {
        *msg = fmt("getentropy: %s", strerror(errno));
        free(dir);
        return IO_TRANSIENT;
    }
    char *tmp = fmt("%s/.%s.%.8s-%u-%02x%02x%02x%02x%02x%02x.tmp", dir, slash + 1,
                    (const char *)ctx->task_id.ptr, ctx->attempt,
                    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    io_kind_t kind = IO_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        int e = errno;
        *msg = fmt("creating %s: %s", tmp, strerror(e));
        kind = kind_of(e);
        goto out;
    }
    for (size_t at = 0; at < data->len;) {
        ssize_t n = write(fd, data->ptr + at, data->len - at);
        if (n < 0) {
            if (errno == EINTR) continue;
            *msg = fmt("writing %s: %s", tmp, strerror(errno));
            kind = IO_TRANSIENT;
            break;
        }
        at += (size_t)n;
    }
    if (kind == IO_OK && fsync(fd) != 0) {
        *msg = fmt("fsync %s: %s", tmp, strerror(errno));
        kind = IO_TRANSIENT;
    }
    if (close(fd) != 0 && kind == IO_OK) {
        *msg = fmt("closing %s: %s", tmp, strerror(errno));
        kind = IO_TRANSIENT;
    }
    if (kind == IO_OK && rename(tmp, full) != 0) {
        int e = errno;
        *msg = fmt("renaming %s to %s: %s", tmp, full, strerror(e));
        kind = kind_of(e);
    }
    if (kind != IO_OK) {
        unlink(tmp);
        goto out;
    }
    kind = sync_dir(dir, msg);
out:
    free(tmp);
    free(dir);
    return kind;
}

// ---------------------------------------------------------------- exports

void exports_plugin_describe(plugin_info_t *ret) {
    memset(ret, 0, sizeof *ret);
    plugin_string_dup(&ret->task_type, "write-file");
    plugin_string_dup(&ret->version, "0.1.0");
    plugin_string_dup(&ret->description, "Render a {{name}} template into a file under /files (C)");
    plugin_string_dup(&ret->params_schema, PARAMS_SCHEMA);
    ret->needs.dirs.len = 1;
    ret->needs.dirs.ptr = calloc(1, sizeof(planrt_task_types_dir_need_t));
    if (!ret->needs.dirs.ptr) abort();
    plugin_string_dup(&ret->needs.dirs.ptr[0].guest_path, ROOT);
    ret->needs.dirs.ptr[0].mode = PLANRT_TASK_TYPES_DIR_MODE_RW;
    ret->needs.network = false;
    ret->default_timeout_ms.is_some = true;
    ret->default_timeout_ms.val = 60000;
    ret->default_memory_limit.is_some = true;
    ret->default_memory_limit.val = 64u << 20;
}

bool exports_plugin_validate(plugin_string_t *text, plugin_string_t *err) {
    params_t p;
    char *e = parse_params(text, &p);
    if (!e) {
        // Rendering is pure: an unknown placeholder is caught before the plan starts.
        buf_t out = {0};
        e = render(&p, &out);
        free(out.ptr);
        cJSON_Delete(p.root);
    }
    plugin_string_free(text);
    if (e) {
        take_string(err, e);
        return false;
    }
    return true;
}

static bool fail(plugin_task_error_t *err, uint8_t tag, char *msg) {
    err->tag = tag;
    take_string(&err->val.transient, msg);  // same layout for every case of the union
    return false;
}

bool exports_plugin_run(plugin_context_t *ctx, plugin_string_t *text, plugin_string_t *ret,
                        plugin_task_error_t *err) {
    bool ok = false;
    params_t p;
    buf_t content = {0};
    char *full = NULL, *msg = NULL;

    if ((msg = parse_params(text, &p)) != NULL) {
        ok = fail(err, PLANRT_TASK_TYPES_TASK_ERROR_INVALID_PARAMS, msg);
        goto out;
    }
    if ((msg = render(&p, &content)) != NULL) {
        ok = fail(err, PLANRT_TASK_TYPES_TASK_ERROR_INVALID_PARAMS, msg);
        goto out_params;
    }
    if (!content.ptr && !buf_append(&content, "", 0)) abort();
    full = fmt(ROOT "/%s", p.path);

    bool same = false;
    io_kind_t kind = same_content(full, &content, &same, &msg);
    if (kind == IO_OK && !same) {
        kind = make_parents(full, &msg);
        if (kind == IO_OK) kind = write_atomically(full, &content, ctx, &msg);
    }
    if (kind != IO_OK) {
        ok = fail(err, kind == IO_PERMANENT ? PLANRT_TASK_TYPES_TASK_ERROR_PERMANENT
                                            : PLANRT_TASK_TYPES_TASK_ERROR_TRANSIENT, msg);
        goto out_params;
    }

    char *line = fmt("%s %s (%zu bytes)", same ? "unchanged" : "wrote", full, content.len);
    log_line(PLANRT_TASK_HOST_LEVEL_INFO, line);
    free(line);

    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "path", p.path) ||
        !cJSON_AddNumberToObject(o, "bytes", (double)content.len) ||
        !cJSON_AddBoolToObject(o, "changed", !same))
        abort();
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) abort();
    take_string(ret, json);
    ok = true;

out_params:
    cJSON_Delete(p.root);
out:
    free(full);
    free(content.ptr);
    plugin_string_free(text);
    plugin_context_free(ctx);
    return ok;
}
