"""Detectors: a registry of families, training, calibration, evaluation, explanations.

>>> from genvis_trust.detectors import Detector, list_families
>>> sorted(list_families())
['bfree', 'cnn', 'cnndetection', 'commfor', 'freq-cnn', 'freq-logreg', 'npr', 'resnet50', 'rine', 'safe', 'stack', 'univfd', 'zed']
>>> det = Detector.create("cnn", device="cpu")
>>> import numpy as np
>>> s = det.score(np.zeros((70, 50, 3), np.uint8))
>>> s.tiles, s.grid, 0.0 <= s.probability <= 1.0
(6, (3, 2), True)
"""

from .calibration import apply_calibration, fit_calibration
from .detector import DetectionScore, Detector, list_bundled, load_detector, tile_image
from .fusion import FusionDetector  # registers the fusion artifact's loader
from .registry import DETECTORS, get_family, list_families, register_detector

__all__ = [
    "DETECTORS",
    "DetectionScore",
    "Detector",
    "FusionDetector",
    "apply_calibration",
    "fit_calibration",
    "get_family",
    "list_bundled",
    "list_families",
    "load_detector",
    "register_detector",
    "tile_image",
]
