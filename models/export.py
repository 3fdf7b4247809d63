"""v5.0 path of the exporter: ``python models/export.py --weights yolov5s.pt --img 640 --batch 1``.

The exporter lives in the repository root (``export.py``, v6.0+ path); this wrapper puts the root on sys.path and
runs it, so every v5.0 flag (``--weights``, ``--img-size``/``--img``, ``--batch-size``, ``--dynamic``, ``--grid``,
``--device``) and every v6+ flag work from here too. ``--grid`` is accepted as a no-op: the decoded output with
the grid inside the graph is already the default.
"""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _root_export():
    """The root ``export`` module, loaded by file path: running this script puts models/ first on sys.path,
    where a plain ``import export`` would find this file instead."""
    module = sys.modules.get("export")
    if module is not None and Path(getattr(module, "__file__", "")).resolve() == ROOT / "export.py":
        return module
    spec = importlib.util.spec_from_file_location("export", ROOT / "export.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["export"] = module
    spec.loader.exec_module(module)
    return module


_export = _root_export()
parse_opt, run, main, cli = _export.parse_opt, _export.run, _export.main, _export.cli

if __name__ == "__main__":
    sys.exit(cli())
