#!/usr/bin/env bash
# Reproduce the bundled default detector (genvis_trust/assets/detectors/default):
# sample every bundled generator into corpora, then train and calibrate with the toolkit's
# own command. CPU only is fine (2 cores: see the README for the measured time).
set -euo pipefail
WORK=${WORK:-/tmp/genvis-default-detector}
N=${N:-1200}
mkdir -p "$WORK"
for m in $(genvis-trust generators list --json | python -c "import json,sys; print(' '.join(b['name'] for b in json.load(sys.stdin)['bundled']))"); do
  n=$N
  # PixelCNN samples pixel by pixel (about 1 s per image on 2 cores): fewer of them
  case "$m" in pixelcnn-*) n=${N_PIXELCNN:-200} ;; esac
  genvis-trust generate "$m" --n "$n" --seed 1 --batch 100 --out "$WORK/$m" --resume
done
fakes=()
for d in "$WORK"/*/; do fakes+=(--fake "$d"); done
genvis-trust train detector npr \
  --real builtin-photos --real builtin-digits "${fakes[@]}" \
  --real-n 6000 --steps 2000 --batch 64 --jpeg-p 0.3 --blur-p 0.1 \
  --reencode jpeg:quality=95 --calibration platt --seed 0 \
  --out "${OUT:-genvis_trust/assets/detectors/default}"
