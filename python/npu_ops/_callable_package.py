"""Makes ``npu_ops.msda`` both the op (a call) and the ``npu_ops/msda/`` subpackage (attributes)."""

from __future__ import annotations

import types
from typing import Any, Callable


class CallablePackage:
    """Stands for a subpackage in its parent's namespace: calling it calls ``fn``, attributes come
    from the subpackage. A plain object rather than a callable ``ModuleType``, because
    ``torch.compile`` can trace a call to an object's ``__call__`` but not a call to a module.
    ``from npu_ops.msda import X`` keeps using the real module from ``sys.modules``.
    """

    def __init__(self, package: types.ModuleType, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_package", package)
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "__doc__", fn.__doc__)
        object.__setattr__(self, "__wrapped__", fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._package, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._package, name, value)

    def __dir__(self) -> list[str]:
        return dir(self._package)

    def __repr__(self) -> str:
        return f"<callable package {self._package.__name__!r}: calls {self._fn.__module__}.{self._fn.__qualname__}>"
