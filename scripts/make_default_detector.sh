#!/usr/bin/env bash
# Reproduce the bundled default detector (genvis_trust/assets/detectors/default): real
# photographs at native resolution vs their aligned TAEF2 reconstructions (paired batches),
# plus 32 px built-in patches vs the five bundled generators' samples. CPU only is fine:
# on 2 shared cores the reconstructions take ~30 min and training ~15 min (see
# benchmarks/results/transfer-log.md for the measured runs).
#
#   DATA=~/.cache/genvis-trust GITHUB_MIRROR=/path/to/mirrors bash scripts/make_default_detector.sh
#
# GITHUB_MIRROR (optional): a folder of bare git dirs named owner+name/repo; without it the
# photo corpus script clones the pinned repositories from GitHub. The Debian photographs
# need apt-get (Debian bookworm package lists).
set -euo pipefail
DATA=${DATA:-${GENVIS_DATA:-$HOME/.cache/genvis-trust}}
STEPS=${STEPS:-2400}
N=${N:-300}
mkdir -p "$DATA"
mirror=()
[ -n "${GITHUB_MIRROR:-}" ] && mirror=(--github-mirror "$GITHUB_MIRROR")

[ -f "$DATA/photos-native/manifest.jsonl" ] || python scripts/build_photo_corpus.py --out "$DATA/photos-native" "${mirror[@]}"
genvis-trust datasets reconstruct "$DATA/photos-native" --out "$DATA/recon-taef2" --max-side 768 \
  $([ -f "$DATA/recon-taef2/manifest.jsonl" ] && echo --resume)
small=()
for m in gan-digits vae-photos flow-photos diffusion-digits pixelcnn-photos; do
  n=$N
  # PixelCNN samples pixel by pixel (about 1 s per image on 2 cores): fewer of them
  case "$m" in pixelcnn-*) n=${N_PIXELCNN:-100} ;; esac
  genvis-trust generate "$m" --n "$n" --seed 1 --batch 100 --out "$DATA/toy/$m" --resume
  small+=(--small-fake "$DATA/toy/$m")
done
python scripts/train_realres_detector.py --real "$DATA/photos-native" --fake "$DATA/recon-taef2" \
  --real-builtin builtin-photos --real-builtin builtin-digits --builtin-n 100 "${small[@]}" --small-n 40 \
  --family npr --patch 128 --steps "$STEPS" --batch 32 --eval-every 100 --patience 8 \
  --paired --pair-share 0.5 --jpeg-p 0.5 --blur-p 0.05 --resize-p 0.15 --upscale-p 0.15 \
  --domain '{"min_side": 128, "photographic": true, "min_jpeg_bpp": 0.5, "small_images": "the five bundled generators (32x32 samples)"}' \
  --out "${OUT:-genvis_trust/assets/detectors/default}"
