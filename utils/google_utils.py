"""v5.0 import path of the download helpers (renamed ``utils/downloads.py`` in v6.0)."""
from utils.downloads import (OFFICIAL_WEIGHTS, DownloadError, attempt_download, is_official,  # noqa: F401
                             safe_download, weights_url)
