"""A detector network run by ONNX Runtime on CPU (one of :meth:`Detector.optimize_for_inference`'s graphs).

The network is exported in memory by ``torch.onnx.export`` (its TorchScript exporter, which
needs the ``onnx`` package: ``pip install 'genvis-trust[onnx]'``) with a free batch axis,
and run by ONNX Runtime's CPU provider with as many threads as torch uses. For the bundled
default detector this is 1.28x the frozen TorchScript graph's throughput at the engine's
batch, logits within 1.5e-6 (``benchmarks/results/forward_cpu.md``); opt-in
(``Detector.optimize_for_inference("onnxruntime")``), not the default, for the reasons
recorded there.

>>> from genvis_trust.detectors import Detector
>>> det = Detector.create("cnn", device="cpu")
>>> det.optimize_for_inference("onnxruntime") if onnx_available() else True
True
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import sys
import warnings

import torch

ONNX_MISSING = ("the optional 'onnx' package is not installed (pip install 'genvis-trust[onnx]'): "
                "torch.onnx needs it to export the network for ONNX Runtime")


def onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


class OnnxGraph:
    """``graph(x)``: the network's output for an ``N x 3 x P x P`` float tensor: logits, or a
    tuple (a stack's logits and member logits) when the network returns one."""

    def __init__(self, net: torch.nn.Module, patch: int, threads: int | None = None):
        if not onnx_available():
            raise ImportError(ONNX_MISSING)
        import onnxruntime as ort

        probe = torch.rand(2, 3, patch, patch)
        net = copy.deepcopy(net).eval()
        with torch.no_grad():
            self.tuple_out = isinstance(net(probe), tuple)
        names = ["z", "m"] if self.tuple_out else ["z"]  # logits (and a stack's member logits)
        buf = io.BytesIO()
        with warnings.catch_warnings(), _stdout_silenced():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(net, (probe,), buf, input_names=["x"], output_names=names,
                              dynamic_axes={"x": {0: "n"}, **{k: {0: "n"} for k in names}}, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.log_severity_level = 3  # errors only: its notices about unused initializers are noise here
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor):
        outs = tuple(torch.from_numpy(o) for o in self.session.run(None, {"x": x.contiguous().numpy()}))
        return outs if self.tuple_out else outs[0]


@contextlib.contextmanager
def _stdout_silenced():
    """The exporter's C++ side prints the whole graph to file descriptor 1 when an export fails
    (a family with an operator ONNX lacks, e.g. freq-cnn's FFT): stdout is the CLI's data sink."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
