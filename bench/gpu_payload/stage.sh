#!/usr/bin/env bash
# Stage the device payload: <repo>/.gpu/ (git-ignored through .git/info/exclude) with this worktree's claim_t5/, nbs/,
# bench/, the wheels the device lacks (downloaded for CPython 3.12 manylinux x86_64) and the commit id.
# Wheels: bench/gpu_payload/wheels.txt lists the 48 files used on 2026-11-28 (pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux..._x86_64 NAME==VERSION; rouge_score is an sdist: pip wheel --no-deps rouge-score==0.1.2).
# Usage: bash bench/gpu_payload/stage.sh <worktree> <repo checkout that the device tool sends> [wheel dir]
set -eu
WT=$(cd "$1" && pwd); REPO=$(cd "$2" && pwd); WHL=${3:-$REPO/.gpu/whl}
mkdir -p "$REPO/.git/info"; grep -qx '/.gpu/' "$REPO/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$REPO/.git/info/exclude"
D=$REPO/.gpu; mkdir -p "$D"
rm -rf "$D/claim_t5" "$D/nbs" "$D/bench"
cp -r "$WT/claim_t5" "$WT/nbs" "$WT/bench" "$D/"
find "$D" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$D/bench/results"
cp "$WT/bench/gpu_payload/run.sh" "$WT/bench/gpu_payload/claim_t5_run.py" "$D/"
git -C "$WT" rev-parse HEAD > "$D/COMMIT"
[ "$WHL" = "$D/whl" ] || { rm -rf "$D/whl"; cp -r "$WHL" "$D/whl"; }
du -sh "$D"
