#!/bin/sh
# The one place that holds llama.cpp's CMake flags and build steps.
# Dockerfile.cpu, Dockerfile.cuda and scripts/build-llama-server (CI, tests) all call it,
# so the flags tested natively are the flags shipped.
#
#   build.sh flags FLAVOUR                       print the CMake flags, one per line
#   build.sh build FLAVOUR SRC BUILD_DIR PAYLOAD configure, build llama-server, collect PAYLOAD
#
# FLAVOUR: cpu | cuda.  Environment:
#   JOBS                  parallel jobs (default: all cores)
#   CUDA_ARCHITECTURES    cuda flavour only (default: 75;80;86;89;90)
#   CPU_ALL_VARIANTS      ON (default) | OFF: OFF builds one portable x64 CPU backend (GPU smoke runs)
#   GGML_CCACHE           ON (default) | OFF
#   BUNDLE_RUNTIME        1: also copy the compiler runtime (libstdc++, libgcc_s, libgomp) into
#                         PAYLOAD, so a final image needs no package manager (Dockerfile.cpu)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions
. "$here/versions"

flags() {
    flavour=$1
    cat <<FLAGS
-DCMAKE_BUILD_TYPE=Release
-DBUILD_SHARED_LIBS=ON
-DGGML_NATIVE=OFF
-DGGML_BACKEND_DL=ON
-DGGML_CPU_ALL_VARIANTS=${CPU_ALL_VARIANTS:-ON}
-DGGML_CCACHE=${GGML_CCACHE:-ON}
-DLLAMA_BUILD_NUMBER=${LLAMA_CPP_BUILD_NUMBER}
-DLLAMA_BUILD_COMMIT=sdist-${LLAMA_CPP_SDIST_SHA256%"${LLAMA_CPP_SDIST_SHA256#????????????}"}
-DLLAMA_BUILD_TESTS=OFF
-DLLAMA_BUILD_EXAMPLES=OFF
-DLLAMA_BUILD_APP=OFF
-DLLAMA_BUILD_TOOLS=ON
-DLLAMA_BUILD_SERVER=ON
-DLLAMA_BUILD_UI=OFF
-DLLAMA_USE_PREBUILT_UI=OFF
-DLLAMA_OPENSSL=OFF
-DCMAKE_EXE_LINKER_FLAGS=-Wl,-z,stack-size=8388608
-DCMAKE_INSTALL_RPATH=\$ORIGIN
-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
FLAGS
    case $flavour in
        cpu) ;;
        cuda)
            echo "-DGGML_CUDA=ON"
            echo "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-75;80;86;89;90}"
            ;;
        *) echo "unknown flavour: $flavour (cpu|cuda)" >&2; return 2 ;;
    esac
}

# Copies what llama-server needs to run from PAYLOAD alone: the binary, the libraries it links
# and every ggml backend module (loaded with dlopen, so ldd does not list them).
collect() {
    bin_dir=$1 payload=$2
    rm -rf "$payload"
    mkdir -p "$payload"
    cp -P "$bin_dir/llama-server" "$bin_dir"/lib*.so* "$payload/"
    # Not shipped: this ggml's AMX kernels run tile instructions on worker threads that never
    # asked the kernel for AMX state (XFD), so Sapphire Rapids hosts die with SIGILL (seen on this
    # project's CI host; upstream llama.cpp PR #26954). Those nodes load the AVX-512 variants.
    rm -f "$payload/libggml-cpu-sapphirerapids.so"
    # The pods' preStop hook: holds SIGTERM back until the server is idle (llama-drain.c).
    ${CC:-cc} -O2 -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE \
        -o "$payload/llama-drain" "$here/llama-drain.c"
    if [ "${BUNDLE_RUNTIME:-0}" = 1 ]; then
        for lib in libstdc++.so.6 libgcc_s.so.1 libgomp.so.1; do
            path=$(ldd "$payload/llama-server" "$payload"/libggml-*.so | awk -v l="$lib" '$1 == l { print $3; exit }')
            if [ -n "$path" ]; then cp -L "$path" "$payload/$lib"; fi
        done
    fi
    # glibc's ldd says "not found", musl's "Error loading shared library".
    if ldd "$payload/llama-server" 2>&1 | grep -Eq 'not found|Error loading'; then
        ldd "$payload/llama-server" >&2
        echo "llama-server has unresolved libraries" >&2
        return 1
    fi
}

build() {
    flavour=$1 src=$2 build_dir=$3 payload=$4
    # Word splitting on newlines only: each line of flags() is one argument.
    old_ifs=$IFS
    IFS='
'
    # shellcheck disable=SC2046
    set -- $(flags "$flavour")
    IFS=$old_ifs
    generator=
    if command -v ninja >/dev/null 2>&1; then generator="-GNinja"; fi
    cmake -S "$src" -B "$build_dir" ${generator:+"$generator"} "$@"
    cmake --build "$build_dir" --target llama-server -j "${JOBS:-$(nproc)}"
    collect "$build_dir/bin" "$payload"
}

cmd=${1:-}
case $cmd in
    flags) flags "${2:?flavour}" ;;
    build) build "${2:?flavour}" "${3:?source dir}" "${4:?build dir}" "${5:?payload dir}" ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
