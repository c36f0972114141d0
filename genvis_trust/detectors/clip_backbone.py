"""The pieces the CLIP-based published families share (``univfd``, ``rine``): OpenAI CLIP's
image tower built by ``open_clip``, the reference test-time input (a 224 px centre crop of the
unresized image with CLIP's normalisation), and where the OpenAI ViT-L/14 weights come from.

The published UnivFD and RINE files hold only their heads; the frozen CLIP ViT-L/14 they sit
on comes from a file the user has or, where the network allows, from the Hugging Face hub
(``timm/vit_large_patch14_clip_224.openai``, open_clip's own copy of OpenAI's weights). The
file is named by ``$GENVIS_TRUST_CLIP_WEIGHTS``; open_clip's ``open_clip_model.safetensors`` /
``open_clip_pytorch_model.bin``, OpenAI's state-dict layout (``visual.*``) and Hugging Face
transformers' ``openai/clip-vit-large-patch14`` ``model.safetensors`` (``vision_model.*`` +
``visual_projection``, renamed here; q/k/v joined into one in-projection) are read, always
with ``weights_only=True`` (OpenAI's own ``ViT-L-14.pt`` is a TorchScript archive, which is
code: it is refused; the hub's safetensors copy holds the same weights).

Not a family itself: no ``@register_detector`` here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .published import WeightsSource
from .registry import CheckpointImportError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# OpenAI CLIP ViT-L/14's image tower (open_clip's ViT-L-14.json, quick_gelu as OpenAI trained it)
VIT_L14 = {"image_size": 224, "patch_size": 14, "width": 1024, "layers": 24, "heads": 16, "output_dim": 768}
CLIP_WEIGHTS_ENV = "GENVIS_TRUST_CLIP_WEIGHTS"
CLIP_HUB_REPO = "timm/vit_large_patch14_clip_224.openai"
CLIP_HUB_FILE = "open_clip_model.safetensors"
CLIP_HUB_URL = f"https://huggingface.co/{CLIP_HUB_REPO}/resolve/main/{CLIP_HUB_FILE}"
# the backbone as a weights source on univfd's and rine's cards (both read only its 'visual.*' tensors)
CLIP_BACKBONE_SOURCE = WeightsSource(CLIP_HUB_URL, CLIP_HUB_FILE, variant="backbone",
                                     note="OpenAI CLIP ViT-L/14 (open_clip's copy on the Hugging Face hub); "
                                          "only its 'visual.*' tensors are used")
EXTRA = "published"  # the pyproject extra that installs the optional packages below


def require(module: str, package: str, family: str):
    """Import an optional package, or say which one is missing and how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"the {family!r} detector needs the optional package {package!r} "
            f"(pip install {package!r}, or pip install 'genvis-trust[{EXTRA}]'): {e}"
        ) from None


def build_clip_visual(family: str, *, image_size: int, patch_size: int, width: int, layers: int,
                      heads: int, output_dim: int) -> nn.Module:
    """OpenAI CLIP's ``VisionTransformer`` (QuickGELU, class-token pooling, ``ln_post`` then
    ``proj``), built by open_clip with OpenAI's parameter names (``conv1``, ``class_embedding``,
    ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N``, ``ln_post``, ``proj``)."""
    open_clip_transformer = require("open_clip.transformer", "open_clip_torch", family)
    return open_clip_transformer.VisionTransformer(
        image_size=image_size, patch_size=patch_size, width=width, layers=layers, heads=heads,
        mlp_ratio=4.0, output_dim=output_dim, act_layer=open_clip_transformer.QuickGELU,
    )


def clip_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """The UnivFD / RINE test transform on one ``H x W x 3`` uint8 RGB image: torchvision's
    ``CenterCrop(size)`` on the PIL image (no resize; a side shorter than ``size`` is padded with
    black, as torchvision pads), ``ToTensor``, ``Normalize`` with CLIP's mean and std."""
    from PIL import Image
    from torchvision.transforms import functional as F

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
    pil = F.center_crop(Image.fromarray(image), [size, size])
    return F.normalize(F.to_tensor(pil), CLIP_MEAN, CLIP_STD)


def visual_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower's tensors of a CLIP state dict, renamed to ``visual.*``: OpenAI / open_clip
    layout (``visual.*``), nested under a wrapper (``model.visual.*``, ``clip.visual.*``), or Hugging
    Face transformers' ``CLIPModel`` / ``CLIPVisionModelWithProjection`` layout."""
    for prefix in ("visual.", "model.visual.", "clip.visual.", "module.visual."):
        found = {"visual." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            return found
    if "vision_model.embeddings.patch_embedding.weight" in state:
        return _from_transformers(state)
    return {}


_HF_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}


def _from_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIP vision tower in OpenAI's names: the same tensors, q/k/v concatenated in
    that order (``nn.MultiheadAttention``'s ``in_proj``), the projection transposed."""
    if "visual_projection.weight" not in state:
        raise CheckpointImportError("a transformers CLIP vision tower without 'visual_projection' (the image "
                                    "embedding needs it: use CLIPModel's or CLIPVisionModelWithProjection's weights)")
    e = "vision_model.embeddings."
    out = {"visual.class_embedding": state[e + "class_embedding"], "visual.conv1.weight": state[e + "patch_embedding.weight"],
           "visual.positional_embedding": state[e + "position_embedding.weight"],
           "visual.proj": state["visual_projection.weight"].t().contiguous()}
    for hf, ours in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"visual.{ours}.{p}"] = state[f"vision_model.{hf}.{p}"]
    layers = {int(k.split(".")[3]) for k in state if k.startswith("vision_model.encoder.layers.")}
    for i in sorted(layers):
        src, dst = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([state[f"{src}self_attn.{q}_proj.{p}"] for q in "qkv"])
            for hf, ours in _HF_BLOCK.items():
                out[f"{dst}{ours}.{p}"] = state[f"{src}{hf}.{p}"]
    return out


def read_clip_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A CLIP checkpoint the user has, as ``visual.*`` tensors (weights-only reading)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: no such file (CLIP ViT-L/14 weights)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a TorchScript archive (OpenAI's .pt) or pickled code: refused
            raise CheckpointImportError(
                f"{path}: not a weights-only CLIP state dict ({type(e).__name__}); use open_clip's "
                f"{CLIP_HUB_FILE} from {CLIP_HUB_URL}") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointImportError(f"{path}: expected a state dict of tensors")
    vis = visual_state(state)
    if not vis:
        raise CheckpointImportError(f"{path}: no 'visual.*' / 'vision_model.*' tensors: not a CLIP checkpoint")
    return vis


def clip_vit_l14_weights(family: str) -> dict[str, torch.Tensor]:
    """OpenAI's CLIP ViT-L/14 image tower: from ``$GENVIS_TRUST_CLIP_WEIGHTS`` when set, else
    downloaded from the Hugging Face hub (needs ``huggingface_hub`` and a network)."""
    local = os.environ.get(CLIP_WEIGHTS_ENV)
    if local:
        return read_clip_weights(local)
    hub = require("huggingface_hub", "huggingface_hub", family)
    try:
        path = hub.hf_hub_download(CLIP_HUB_REPO, CLIP_HUB_FILE)
    except Exception as e:  # offline, proxy, missing file: the user needs to know where to put one
        raise CheckpointImportError(
            f"the {family!r} checkpoint holds only its head; the CLIP ViT-L/14 weights could not be "
            f"downloaded from {CLIP_HUB_URL} ({type(e).__name__}: {e}). Download that file (or use "
            f"open_clip's 'ViT-L-14'/'openai' weights) and set {CLIP_WEIGHTS_ENV}=/path/to/it") from None
    return read_clip_weights(path)


def visual_config(vis: dict[str, torch.Tensor]) -> dict[str, int]:
    """The tower's architecture read from its tensors' shapes."""
    try:
        width, _, patch, _ = vis["visual.conv1.weight"].shape
        tokens = vis["visual.positional_embedding"].shape[0]
        output_dim = vis["visual.proj"].shape[1]
    except KeyError as e:
        raise CheckpointImportError(f"CLIP image tower without {e.args[0]}") from None
    layers = 1 + max(int(k.split(".")[3]) for k in vis if k.startswith("visual.transformer.resblocks."))
    grid = round((tokens - 1) ** 0.5)
    return {"image_size": grid * patch, "patch_size": patch, "width": width, "layers": layers,
            "heads": width // 64, "output_dim": output_dim}


__all__ = ["CLIP_MEAN", "CLIP_STD", "CLIP_WEIGHTS_ENV", "VIT_L14", "build_clip_visual", "clip_input",
           "clip_vit_l14_weights", "read_clip_weights", "require", "visual_config", "visual_state"]
