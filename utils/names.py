"""Class names in one shape: a list of str, whatever a yaml, a checkpoint or an exported file stored."""
from __future__ import annotations

from typing import Any, List, Optional


def class_names(names: Any, nc: Optional[int] = None) -> List[str]:
    """A list of str from a list / tuple, a ``{index: name}`` dict (int or str keys, as v7 checkpoints and
    exports store them) or None ('0', '1', ... for ``nc`` classes)."""
    if names is None:
        return [str(i) for i in range(nc or 0)]
    if isinstance(names, dict):
        return [str(v) for _, v in sorted(((int(k), v) for k, v in names.items()), key=lambda kv: kv[0])]
    return [str(n) for n in names]
