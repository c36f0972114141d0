#!/usr/bin/env bash
# Reproduce the bundled default detector (genvis_trust/assets/detectors/default):
# sample every bundled generator into corpora, then train and calibrate with the toolkit's
# own command. CPU only is fine (2 cores: see the README for the measured time).
set -euo pipefail
WORK=${WORK:-/tmp/genvis-default-detector}
N=${N:-1200}
mkdir -p "$WORK"
for m in $(genvis-trust generators list --json | python -c "import json,sys; print(' '.join(b['name'] for b in json.load(sys.stdin)['bundled']))"); do
  genvis-trust generate "$m" --n "$N" --seed 1 --batch 100 --out "$WORK/$m" --resume
done
fakes=()
for d in "$WORK"/*/; do fakes+=(--fake "$d"); done
genvis-trust train detector cnn \
  --real builtin-photos --real builtin-digits "${fakes[@]}" \
  --real-n 6000 --steps 3000 --batch 64 --jpeg-p 0.3 --blur-p 0.1 \
  --reencode jpeg:quality=95 --calibration platt --seed 0 \
  --out "${OUT:-genvis_trust/assets/detectors/default}"
