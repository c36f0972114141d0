"""One registry shape for every kind of thing the toolkit names (timm's ``_registry``).

Detector families, generator families, dataset sources, perturbations and watermark
backends each keep one :class:`Registry` and speak the same verbs:

- ``register(name, obj)`` (or ``@registry.decorator(name)``): a second, different object
  under a taken name is an error, never a silent overwrite;
- ``list()``: ``{name: obj}`` sorted by name;
- ``get(name)``: the object, or an error naming the known names;
- ``create(name, **config)``: a new instance built by the kind's factory.

>>> r = Registry("colour")
>>> _ = r.register("red", dict)
>>> r.create("red", hex="#f00")
{'hex': '#f00'}
>>> r.get("blue")
Traceback (most recent call last):
ValueError: unknown colour 'blue'; known: red
>>> r.register("red", list)
Traceback (most recent call last):
ValueError: colour 'red' is already registered
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Objects of one kind by name.

    ``load`` imports the modules whose import registers the built-in entries (called once,
    on first lookup, so importing the registry stays cheap); ``factory(obj, **config)``
    builds an instance for :meth:`create` (default: ``obj(**config)``); ``error`` is the
    exception class the kind's callers already catch.
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[Exception] = ValueError,
        load: Callable[[], Any] | None = None,
        factory: Callable[..., Any] | None = None,
    ):
        self.kind = kind
        self.error = error
        self._load = load
        self._factory = factory
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name``; re-registering the same object (a module reload) is allowed."""
        if not isinstance(name, str) or not name:
            raise self.error(f"a {self.kind} needs a non-empty name, got {name!r}")
        held = self._entries.get(name)
        if held is not None and held is not obj:
            raise self.error(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        return obj

    def decorator(self, name: str | None = None, /, **attrs: Any) -> Callable[[T], T]:
        """``@registry.decorator(name, attr=value)``: register the object, then set ``attrs`` on it."""

        def deco(obj):
            self.register(name or obj.__name__, obj)
            for k, v in attrs.items():
                setattr(obj, k, v)
            return obj

        return deco

    def list(self) -> dict[str, T]:
        self._ensure_loaded()
        return dict(sorted(self._entries.items()))

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, /, **config: Any) -> Any:
        obj = self.get(name)
        return self._factory(obj, **config) if self._factory else obj(**config)  # type: ignore[operator]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __getitem__(self, name: str) -> T:  # raises ``error`` (a ValueError), not KeyError
        return self.get(name)

    def _ensure_loaded(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None  # before calling: loading registers into us
            try:
                load()
            except BaseException:
                self._load = load
                raise

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

