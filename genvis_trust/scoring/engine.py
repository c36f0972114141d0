"""The batched, device-aware inference engine behind ``scan``, ``audit``, the service and Ray.

Images are read and decoded by a pool of worker threads (Pillow and OpenCV release the
GIL while decoding) and cut into the detector's tiles there; the main thread packs tiles
from many images into large batches for one forward pass each, and hands back one
result per input, in input order, as soon as all of that input's tiles are scored. A
bounded window of in-flight images keeps memory constant however long the stream.

On CUDA the detector runs in float16 autocast with channels-last tensors from pinned
host memory (see :meth:`Detector.forward_uint8`); on CPU torch uses every core.

A detector that reproduces a published model (``Detector.whole_image``) reads whole images:
the worker runs its ``prepare_input`` (the reference code's preprocessing) instead of tiling,
the main thread scores inputs of equal shape together and any other one alone, in float32.

>>> import numpy as np
>>> from genvis_trust.detectors import Detector
>>> eng = ScoringEngine(Detector.create("cnn", device="cpu"))
>>> [r.ok for r in eng.score_arrays([np.zeros((40, 40, 3), np.uint8)])]
[True]
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from genvis_trust.detectors.detector import DetectionScore, Detector, load_detector
from genvis_trust.devices import use_all_cores
from genvis_trust.io import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    LoadedImage,
    decode_image,
    read_bytes,
)

if TYPE_CHECKING:  # a type only: importing the provenance checks costs start-up and is the hook's job
    from genvis_trust.provenance.verify import ProvenanceReport

# hook(data, loaded, name, error=None) -> the input's provenance report (see ScoringEngine)
ProvenanceHook = Callable[..., "ProvenanceReport | None"]


@dataclass
class ScoreRecord:
    """One input's outcome: the detector score, or an error naming the problem."""

    input: str
    score: DetectionScore | None = None
    image: dict[str, Any] = field(default_factory=dict)  # width, height, format, conversions, notes
    error: dict[str, Any] | None = None
    loaded: LoadedImage | None = None  # kept only when the engine is asked to (scan needs pixels)
    provenance: ProvenanceReport | None = None  # the per-input hook's report (scan's provenance checks)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Prepared:
    input: str
    tiles: Any  # uint8 tiles N x P x P x 3, or a whole-image detector's 1 x 3 x H x W float tensor
    meta: tuple | None  # (positions, grid, notes)
    image: dict[str, Any]
    error: dict[str, Any] | None
    loaded: LoadedImage | None
    provenance: ProvenanceReport | None = None


_END = object()


class ScoringEngine:
    """Score a stream of paths, bytes or arrays with one detector, in shared batches."""

    def __init__(
        self,
        detector: Detector | str = "default",
        *,
        device: str = "auto",
        batch_size: int | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        window: int | None = None,
        keep_images: bool = False,
        hook: ProvenanceHook | None = None,
        optimize: bool = True,
    ):
        """``hook(data, loaded, name, error=None)`` runs in the decode worker for every input
        whose bytes were read (``data`` is the encoded file, ``None`` for arrays; when the
        pixels do not decode, ``loaded`` is ``None`` and ``error`` the ImageLoadError) and
        returns its provenance report: ``record.provenance``.
        ``optimize``: on CPU, run a faster form of the network (batch norms folded, or a
        frozen TorchScript graph: :meth:`Detector.optimize_for_inference`)."""
        self.detector = detector if isinstance(detector, Detector) else load_detector(detector, device=device)
        # threads first: an ONNX Runtime graph takes torch's thread count when it is built
        ncores = use_all_cores() if self.detector.device.type == "cpu" else (os.cpu_count() or 1)
        # CPU: small batches stay in cache (for the default detector with 2 threads, 16 tiles gave
        # 1.59x the throughput of 128; with one thread, 4 of its 128 px tiles ~1.25x 16; logits the
        # same bit for bit: benchmarks/results/forward_cpu.md, startup.md; smaller tiles, not
        # measured at 4, keep 16); GPU: large batches
        cpu_batch = 4 if ncores == 1 and self.detector.patch >= 128 else 16
        self.batch_size = batch_size or (cpu_batch if self.detector.device.type == "cpu" else 1024)
        if self.detector.whole_image and not batch_size:
            # whole images of a published detector: a batch is images of one shape, each input
            # ~12 bytes a pixel as float32 (a 1500 px photograph ~27 MB); keep few in flight
            self.batch_size = 4 if self.detector.device.type == "cpu" else 16
        self.optimized = self.detector.optimize_for_inference() if optimize else False
        # decode threads share the cores with torch's own threads: half of them (at least one)
        self.workers = workers or max(1, ncores // 2)
        self.max_pixels = max_pixels
        self.window = window or (max(8, 2 * self.workers) if self.detector.whole_image else max(64, 4 * self.workers))
        self.keep_images = keep_images
        self.hook = hook

    # -- per input, in a worker thread
    def _prepare(self, item: Any, name: str) -> _Prepared:
        try:
            data = None
            if isinstance(item, np.ndarray):
                loaded = LoadedImage(array=item, format="array", mode="RGB", path=name)
            else:
                data = bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else read_bytes(item)
                loaded = decode_image(data, path=name, max_pixels=self.max_pixels)
            tiles, positions, grid, notes = self.detector.inputs(loaded.array)
            ood = self.detector.domain_check(loaded.array, loaded.format, len(data) if data is not None else None)
            facts = {
                "width": loaded.width,
                "height": loaded.height,
                "format": loaded.format,
                "bytes": len(data) if data is not None else None,
                "conversions": loaded.conversions,
                "notes": loaded.notes,
            }
            prov = self.hook(data, loaded, name) if self.hook is not None else None
            kept = loaded if self.keep_images else None
            return _Prepared(name, tiles, (positions, grid, notes, ood), facts, None, kept, prov)
        except ImageLoadError as e:
            # provenance lives in the bytes: the hook still reads them (C2PA of a video, of a
            # stamped PNG whose pixels were damaged) when the pixels do not decode
            prov = None
            if self.hook is not None and data is not None:
                try:
                    prov = self.hook(data, None, name, e)
                except Exception:  # the decode error is the record's story; never lose it
                    prov = None
            return _Prepared(name, None, None, {}, e.to_dict(), None, prov)
        except Exception as e:  # a batch never dies for one input
            err = {"code": "internal", "message": f"{type(e).__name__}: {e}", "path": name}
            return _Prepared(name, None, None, {}, err, None)

    def score_paths(self, inputs: Iterable[Any], names: Iterable[str] | None = None) -> Iterator[ScoreRecord]:
        """Yield one :class:`ScoreRecord` per input, in input order."""
        names_it = iter(names) if names is not None else None
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            pending: deque[Future] = deque()
            ready: deque[_Prepared] = deque()
            it = iter(inputs)
            exhausted, k = False, 0
            while True:
                while not exhausted and len(pending) < self.window:
                    item = next(it, _END)
                    if item is _END:
                        exhausted = True
                        break
                    name = next(names_it) if names_it is not None else input_name(item, k)
                    k += 1
                    pending.append(pool.submit(self._prepare, item, name))
                if not pending:
                    yield from self._flush(ready)
                    return
                ready.append(pending.popleft().result())  # in input order
                while pending and pending[0].done():
                    ready.append(pending.popleft().result())
                n_tiles = sum(len(p.tiles) for p in ready if p.tiles is not None)
                if n_tiles >= self.batch_size or (exhausted and not pending):
                    yield from self._flush(ready)

    def _flush(self, ready: deque[_Prepared]) -> Iterator[ScoreRecord]:
        if not ready:
            return
        batch = list(ready)
        ready.clear()
        stacks = [p.tiles for p in batch if p.tiles is not None]
        if self.detector.whole_image:  # one prepared input per image; equal shapes share a pass
            # (a fusion: each member over the batch its own way; its member logits come with them)
            logits, members = self.detector.logits_prepared(stacks, self.batch_size, members=True)
        else:
            # one pass: a stack's member logits come with its logits, for inputs a domain head decides
            logits, members = (self.detector.logits(np.concatenate(stacks), self.batch_size, members=True)
                               if stacks else (np.zeros(0), None))
        pos = 0
        for p in batch:
            if p.tiles is None:
                yield ScoreRecord(p.input, None, p.image, p.error, None, p.provenance)
                continue
            z = logits[pos : pos + len(p.tiles)]
            m = None if members is None else members[pos : pos + len(p.tiles)]
            pos += len(p.tiles)
            positions, grid, notes, ood = p.meta
            score = self.detector.aggregate(z, p.tiles, positions, grid, notes, ood, members=m)
            yield ScoreRecord(p.input, score, p.image, None, p.loaded, p.provenance)

    def score_arrays(self, images: Iterable[np.ndarray]) -> Iterator[ScoreRecord]:
        return self.score_paths(images, names=(f"<array {i}>" for i in _count()))


def _count():
    i = 0
    while True:
        yield i
        i += 1


def input_name(item: Any, i: int) -> str:
    """The name a record gets when none is given: the path, or ``<input i>`` for bytes and arrays."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<input {i}>"
