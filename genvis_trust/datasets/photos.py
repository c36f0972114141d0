"""Real photographs at native resolution, built offline from public sources with their origins.

Photographs are scarce among the sources reachable without a general network, so the corpus
is *built*, not shipped: ``scripts/build_photo_corpus.py`` collects classic real-photo test
sets that public GitHub repositories vendor (Kodak, CBSD68, McMaster) and the camera
photographs among Debian's wallpaper packages, pinned by sha256, into a corpus whose every
record names its origin (repository + commit + path, or package + version + path) and
licence. Splits are fixed per photograph in the manifest (``meta.split``) so reconstructions
of a photograph land in the same split as the photograph.

Sources reserved for independent evaluation are never collected here (see DESIGN.md).

The ``photos-native`` source reads that corpus from ``$GENVIS_DATA/photos-native``
(default ``~/.cache/genvis-trust/photos-native``), or from ``root=``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Item, SourceError, register_source
from .corpus import MANIFEST, CorpusSource

# Never to be used for training, tuning, validation or thresholds (DESIGN.md).
RESERVED_REPOSITORIES = frozenset(
    {
        "compvis/stable-diffusion",
        "stability-ai/stablediffusion",
        "stability-ai/generative-models",
        "deep-floyd/if",
        "contentauth/c2pa-python",
    }
)
RESERVED_PACKAGES = frozenset({"plasma-workspace-wallpapers", "mate-backgrounds"})


def data_home() -> Path:
    """Where built data lives: ``$GENVIS_DATA`` or ``~/.cache/genvis-trust``."""
    return Path(os.environ.get("GENVIS_DATA") or Path.home() / ".cache" / "genvis-trust")


def check_not_reserved(origin: dict) -> None:
    """Refuse an origin that names a source reserved for independent evaluation.

    >>> check_not_reserved({"repository": "cszn/FFDNet"})
    >>> check_not_reserved({"package": "mate-backgrounds"})
    Traceback (most recent call last):
    ...
    genvis_trust.datasets.base.SourceError: mate-backgrounds is reserved for independent evaluation: never train, tune or validate on it
    """
    repo = str(origin.get("repository") or "").lower()
    pkg = str(origin.get("package") or "").lower()
    if repo in RESERVED_REPOSITORIES or pkg in RESERVED_PACKAGES:
        raise SourceError(f"{repo or pkg} is reserved for independent evaluation: never train, tune or validate on it")


@register_source(
    "photos-native",
    "real photographs at native resolution with origins (build: scripts/build_photo_corpus.py)",
)
class NativePhotos(CorpusSource):
    """The built real-photo corpus; splits come from its manifest.

    Use ``patch=`` for random native-resolution crops (no resizing: ``scales=(1.0,)``).
    """

    def __init__(self, root: str | os.PathLike | None = None, **options):
        root = Path(root) if root is not None else data_home() / "photos-native"
        if not (root / MANIFEST).is_file():
            raise SourceError(
                f"photos-native: no corpus at {root}. Build it with "
                f"`python scripts/build_photo_corpus.py --out {root}` (or set GENVIS_DATA)"
            )
        options.setdefault("keep_splits", True)
        super().__init__(root, **options)
        self.name = "photos-native"  # the registered name: cards record it and resumes check it

    def list_items(self) -> list[Item]:
        items = super().list_items()
        for it in items:
            check_not_reserved((it.meta or {}).get("origin") or {})
        return items


__all__ = ["RESERVED_PACKAGES", "RESERVED_REPOSITORIES", "NativePhotos", "check_not_reserved", "data_home"]
