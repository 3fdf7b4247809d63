"""Upstream import path ``utils.downloads`` (v6.0+): re-exports only; the code is in :mod:`engine.downloads`."""
from engine.downloads import (OFFICIAL_WEIGHTS, DownloadError, attempt_download, is_official,  # noqa: F401
                              safe_download, weights_url)
