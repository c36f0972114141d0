"""The Python environment the toolkit runs in: a torch/torchvision pair that does not fit
together is named at the import that fails, with the command that fixes it (``doctor`` shows
the rest). Imports nothing heavy itself, so the CLI can name its error types at start.

>>> torchvision_for_torch("2.14.1+cpu")
'0.29.1'
"""

from __future__ import annotations


class TorchvisionMismatch(RuntimeError):
    """``torchvision`` does not import with this ``torch``; the message says how to fix it."""


# torch 2.N pairs with torchvision 0.(N+15) (2.0 <-> 0.15 ... 2.14 <-> 0.29)
_TV_OFFSET = 15


def torchvision_for_torch(torch_version: str) -> str | None:
    """The torchvision release built against ``torch_version`` (``"2.14.1+cpu"`` -> ``"0.29.1"``).

    >>> torchvision_for_torch("2.14.1+cpu"), torchvision_for_torch("2.5.0")
    ('0.29.1', '0.20.0')
    """
    parts = torch_version.split("+")[0].split(".")
    if len(parts) < 2 or parts[0] != "2" or not parts[1].isdigit():
        return None
    patch = parts[2] if len(parts) > 2 and parts[2].isdigit() else "0"
    return f"0.{int(parts[1]) + _TV_OFFSET}.{patch}"


def torchvision_fix(problem: str, torch_version: str | None = None, torch_cuda: str | None | bool = False,
                    torchvision_version: str | None = None) -> str:
    """One message: what is wrong with the torch/torchvision pair and the pip command that fixes it.
    Defaults read the installed versions (``torch_cuda=False``: ask torch)."""
    from importlib import metadata

    if torch_version is None or torch_cuda is False:
        import torch

        torch_version = torch_version or torch.__version__
        if torch_cuda is False:
            torch_cuda = torch.version.cuda
    if torchvision_version is None:
        try:
            torchvision_version = metadata.version("torchvision")
        except metadata.PackageNotFoundError:
            torchvision_version = None
    want = torchvision_for_torch(torch_version)
    base = torch_version.split("+")[0]
    build = f"CUDA {torch_cuda} build" if torch_cuda else "CPU-only build"
    have = f"torchvision {torchvision_version}" if torchvision_version else "torchvision is not installed"
    pin = f"torchvision=={want}" if want else "torchvision"
    if torch_cuda:
        index = f"https://download.pytorch.org/whl/cu{str(torch_cuda).replace('.', '')}"
    else:
        index = "https://download.pytorch.org/whl/cpu"
    lines = [
        f"torchvision cannot be imported ({problem}): torch {torch_version} is the {build}, {have}; "
        "the two must be built for each other (a CPU torch with a CUDA torchvision from PyPI gives "
        "'operator torchvision::nms does not exist').",
        f"Fix: pip install --force-reinstall --no-deps '{pin}' --index-url {index}",
    ]
    if not torch_cuda:
        lines.append(f"Where that index cannot be reached, install the pair from PyPI (CUDA wheels, they run on "
                     f"a CPU too): pip install --force-reinstall 'torch=={base}' '{pin}'")
    lines.append("Check with: genvis-trust doctor")
    return "\n".join(lines)


def import_torchvision():
    """``import torchvision``, or :class:`TorchvisionMismatch` naming the fix when the installed
    torchvision does not match torch (its compiled operators fail to register at import)."""
    try:
        import torchvision
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise
        raise TorchvisionMismatch(torchvision_fix("it is not installed")) from None
    except (RuntimeError, ImportError, OSError, AttributeError) as e:
        raise TorchvisionMismatch(torchvision_fix(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from e
    return torchvision
