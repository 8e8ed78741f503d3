#!/usr/bin/env bash
# Unsloth for the GPU machine (no network there; wheels travel in the working tree, 64 MiB a call with it).
# Run HERE (pip can download), from the repository root:  bash bench/unsloth_wheels.sh
#
# Writes .whl-unsloth/ (gitignored), about 20 MB:
#   *.whl       what Unsloth imports to train that the GPU image (Python 3.12, torch 2.11+cu130,
#               transformers 5.17.0, peft, accelerate, triton, torchvision) lacks or has in a version Unsloth
#               refuses. Install with --target into a folder of its own, first on PYTHONPATH for the Unsloth
#               process only, so the lab's trl 1.16 / datasets 5 stay what plain TRL and the lab run with.
#   cudart12/   CUDA 12.8's runtime wheel, NOT for PYTHONPATH: xformers 0.0.35's extension links libcudart.so.12
#               (it uses torch's stable ABI, so torch 2.11 itself is fine) and Unsloth uses xformers only when
#               that extension loads. Install it to its own folder and put its lib/ on LD_LIBRARY_PATH. On
#               PYTHONPATH, torch's own CUDA preloading would find nvidia/cuda_runtime there first.
#   bnb/        bitsandbytes 0.50.2 with only the libraries a CUDA 13 torch loads (libbitsandbytes_cuda130 is an
#               exact match, so its loader picks the same file as from the full wheel): 3 MB instead of 43 MB,
#               which is what lets the QLoRA call carry the lab's wheels and Unsloth's together.
#
# Left out on purpose, after reading unsloth 2026.10.9 / unsloth_zoo 2026.10.9 and tracing `import unsloth`
# (python -X importtime, UNSLOTH_ALLOW_CPU=1 so the CUDA branches run) and a CPU training run:
#   studio/ (24 MB of the unsloth wheel; the web UI: nothing under unsloth/ or unsloth_zoo/ imports it; only the
#     Decision API's GGUF export reads a file there), diffusers (never imported), hf_transfer (only probed with
#     find_spec for hub downloads), tyro, msgspec (vLLM LoRA requests only), structlog, json5, nest_asyncio
#     (OpenEnv only), pydantic (unsloth_zoo imports it inside a try only to silence one of its warnings; 2.14 also
#     wants a newer typing_extensions than the image may have). Optional but kept, because a user's
#     `pip install unsloth` has them and they change what runs: xformers (Unsloth's attention without flash-attn,
#     padded and padding-free), torchao (transformers imports it when present; Unsloth patches it at import),
#     cut_cross_entropy (imported when present on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=.whl-unsloth
UNSLOTH=2026.10.9
PINS=(
  "unsloth_zoo==$UNSLOTH"
  "trl==1.15.0"               # Unsloth requires trl<=1.15.0 (it rewrites TRL's trainers from their source)
  "datasets==4.8.5"           # and datasets<5; 4.8.5 takes the dill 0.4.1 / multiprocess 0.70.19 the lab carries
  "cut_cross_entropy==25.1.1"
  "xformers==0.0.35"          # torch>=2.10, stable ABI; its attention calls torch's flash kernels
  "torchao==0.18.0"
)
# The GPU machine's interpreter and platform (see /work/.library/device/README.md).
PLATFORM=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

rm -rf "$OUT" && mkdir -p "$OUT/cudart12" "$OUT/bnb"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 -m pip download -q "${PLATFORM[@]}" -d "$OUT" "${PINS[@]}"
python3 -m pip download -q "${PLATFORM[@]}" -d "$OUT/cudart12" "nvidia-cuda-runtime-cu12==12.8.90"
python3 -m pip download -q "${PLATFORM[@]}" -d "$WORK" "unsloth==$UNSLOTH" "bitsandbytes==0.50.2"

# Rewrite a wheel without some of its files, RECORD rewritten to match (same name and version: pip installs
# it as the original).
slim() {  # slim SOURCE_WHEEL DEST_DIR PYTHON_REGEX_OF_PATHS_TO_DROP
  python3 - "$@" <<'EOF'
import re, sys, zipfile
from pathlib import Path

source, dest, drop = Path(sys.argv[1]), Path(sys.argv[2]), re.compile(sys.argv[3])
target = dest / source.name
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if drop.match(info.filename):
            continue
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True)
                            if not drop.match(line.split(b",", 1)[0].decode()))
        zout.writestr(info, data)
print(f"{target}: {source.stat().st_size / 1e6:.1f} MB -> {target.stat().st_size / 1e6:.1f} MB")
EOF
}
slim "$WORK"/unsloth-"$UNSLOTH"-*.whl "$OUT" '^studio/'
slim "$WORK"/bitsandbytes-0.50.2-*.whl "$OUT/bnb" '^bitsandbytes/libbitsandbytes_(cuda1[12]\d|rocm|xpu)'

du -ab "$OUT" | sort -n | tail -20
echo "total: $(du -sb "$OUT" | cut -f1) bytes in $OUT"
