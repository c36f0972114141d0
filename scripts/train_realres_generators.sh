#!/usr/bin/env bash
# Reproduce the bundled real-resolution generators (issue "Generators at real resolution"):
# all five train on native-resolution crops of the photos-native corpus
# (scripts/build_photo_corpus.py; origins and licences in its manifest), then
# scripts/bundle_generator.py copies the sampling weights into genvis_trust/assets/generators/
# with a card naming the data's origins and the evaluation numbers.
#
#   GENVIS_DATA=~/.cache/genvis-trust RUNS=/tmp/gvruns bash scripts/train_realres_generators.sh
#
# Wall-time budgets are for 2 shared CPU cores (the measured runs are in each model's card);
# on a CUDA GPU pass DEVICE=cuda and raise the budgets. Every step resumes: rerunning the
# script continues where it stopped.
set -euo pipefail
RUNS=${RUNS:-/tmp/gvruns}
DEVICE=${DEVICE:-auto}
THREADS=${THREADS:-2}
mkdir -p "$RUNS"
common=(--data photos-native --device "$DEVICE" --threads "$THREADS")

train() {  # train NAME FAMILY ARGS...: resume when a run exists
  local name=$1 family=$2; shift 2
  local resume=()
  [ -f "$RUNS/$name/train_state.safetensors" ] && resume=(--resume)
  genvis-trust train generator "$family" --out "$RUNS/$name" "${common[@]}" "$@" "${resume[@]}"
}

# 1. the first stage: KL autoencoder, 8x down, 128 px crops
train klae-photos autoencoder --steps 6000 --batch 8 --n 6000 --checkpoint-every 500 --time-budget 1400
python scripts/bundle_generator.py "$RUNS/klae-photos" --name klae-photos
# 2. latent diffusion in its latent space, 256 px (4 x 32 x 32 latents)
train ldm-photos-256 latent-diffusion --steps 4000 --batch 8 --n 3000 --checkpoint-every 250 \
  --time-budget 2400 -c image_size=256 -c autoencoder=klae-photos -c width=48 -c 'mults=[1,2,2]'
python scripts/bundle_generator.py "$RUNS/ldm-photos-256" --name ldm-photos-256
# 3. super-resolution x4 (256 px inputs -> 1024 px outputs)
train sr4-photos super-resolution --steps 3000 --batch 16 --n 6000 --checkpoint-every 500 --time-budget 700
python scripts/bundle_generator.py "$RUNS/sr4-photos" --name sr4-photos
# 4. inpainting of masked regions
train inpaint-photos inpainting --steps 6000 --batch 8 --n 6000 --checkpoint-every 500 --time-budget 700
python scripts/bundle_generator.py "$RUNS/inpaint-photos" --name inpaint-photos
# 5. a DCGAN at 128 px (transposed-convolution up-sampling traces)
train gan-photos-128 gan --steps 4000 --batch 32 --n 6000 --checkpoint-every 500 --time-budget 900 \
  -c image_size=128 -c width=16 -c d_width=16 -c z_dim=128
python scripts/bundle_generator.py "$RUNS/gan-photos-128" --name gan-photos-128
