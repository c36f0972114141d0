"""Real-data sources, corpora, splits and the shared perturbations.

>>> from genvis_trust.datasets import get_source
>>> src = get_source("builtin-digits", n=3, seed=0)
>>> [s.class_id is not None for s in src]
[True, True, True]
"""

from . import builtin, photos  # noqa: F401  (register the built-in and built sources)
from .adapters import MapDatasetSource
from .base import (
    DEFAULT_FRACTIONS,
    LABELS,
    SOURCES,
    SPLITS,
    Item,
    Sample,
    Source,
    SourceError,
    assign_splits,
    list_sources,
    register_source,
)
from .corpus import (
    Corpus,
    CorpusError,
    CorpusRecord,
    CorpusSource,
    CorpusWriter,
    read_corpus,
    write_corpus,
)
from .folders import FolderSource, ForenSynthsSource, GenImageSource, detect_layout, get_source

__all__ = [
    "DEFAULT_FRACTIONS",
    "LABELS",
    "SOURCES",
    "SPLITS",
    "Corpus",
    "CorpusError",
    "CorpusRecord",
    "CorpusSource",
    "CorpusWriter",
    "FolderSource",
    "ForenSynthsSource",
    "GenImageSource",
    "Item",
    "MapDatasetSource",
    "Sample",
    "Source",
    "SourceError",
    "assign_splits",
    "detect_layout",
    "get_source",
    "list_sources",
    "read_corpus",
    "register_source",
    "write_corpus",
]
