"""genvis-trust: content provenance and deepfake detection with built-in generators."""

__version__ = "0.1.0"
