"""utils/downloads.py and weights/download_weights.sh against a local HTTP server (never the outside network)."""
from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from engine import downloads
from engine.downloads import OFFICIAL_WEIGHTS, DownloadError, attempt_download, weights_url

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------- fixtures
class _Server:
    """Threaded HTTP server on 127.0.0.1 (random port). ``routes[path] = (status, body, mode)`` where mode is
    'ok', 'truncate' (announces len(body) bytes, sends half, closes) or 'check' (calls ``on_midway`` after half
    of the body, then sends the rest)."""

    def __init__(self):
        self.routes, self.requests, self.on_midway = {}, [], None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                server.requests.append(self.path)
                status, body, mode = server.routes.get(self.path, (404, b"not found", "ok"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = len(body) // 2
                if mode == "truncate":
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode == "check":
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    server.on_midway()
                    self.wfile.write(body[half:])
                    return
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    monkeypatch.setenv(downloads.URL_ENV, s.url + "/")
    yield s
    s.close()


def _tiny_checkpoint(path: Path, nc: int = 3) -> Path:
    """A real project checkpoint of a narrow yolov5s (width 1/8) with nc classes."""
    from models.model import Model
    from engine.checkpoint import model_record, save_checkpoint

    cfg = yaml.safe_load((ROOT / "models" / "yolov5s.yaml").read_text())
    cfg.update(width_multiple=0.125, nc=nc)
    model = Model(cfg)
    model.names = [f"class{i}" for i in range(nc)]
    return save_checkpoint({"epoch": -1, "model": model_record(model, half=True)}, path)


@pytest.fixture(scope="module")
def ckpt_bytes(tmp_path_factory) -> bytes:
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt").read_bytes()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: connecting to it is refused


# ------------------------------------------------------------------------------------------------- attempt_download
def test_official_names_and_default_url(monkeypatch):
    monkeypatch.delenv(downloads.URL_ENV, raising=False)
    assert set(OFFICIAL_WEIGHTS) == {f"yolov5{s}{p}.pt" for s in "smlx" for p in ("", "6")}
    assert weights_url("yolov5s.pt") == "https://github.com/ultralytics/yolov5/releases/download/v5.0/yolov5s.pt"
    assert weights_url("yolov5x6.pt", release="v6.0").endswith("/releases/download/v6.0/yolov5x6.pt")
    monkeypatch.setenv(downloads.URL_ENV, "http://mirror.invalid/w//")
    assert weights_url("yolov5m.pt") == "http://mirror.invalid/w/yolov5m.pt"


def test_download_success_temp_then_rename(server, ckpt_bytes, tmp_path, monkeypatch, capsys):
    target = tmp_path / "weights" / "yolov5s.pt"  # the directory does not exist yet
    server.routes["/yolov5s.pt"] = (200, ckpt_bytes, "check")
    midway = []
    # Half of the body is on the wire: the target must not exist yet, only a temp file next to it.
    server.on_midway = lambda: midway.append((target.exists(), sorted(p.name for p in target.parent.iterdir())))
    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    out = attempt_download(target)
    assert out == str(target) and target.read_bytes() == ckpt_bytes
    assert server.requests == ["/yolov5s.pt"]
    assert midway[0][0] is False and len(midway[0][1]) == 1 and midway[0][1][0].endswith(".part")
    src, dst = replaced[-1]
    assert dst == target and src.parent == target.parent and src.name.startswith("yolov5s.pt.")
    assert sorted(p.name for p in target.parent.iterdir()) == ["yolov5s.pt"]  # temp file gone
    assert "100%" in capsys.readouterr().err  # tqdm progress bar reached the end

    from engine.checkpoint import attempt_load
    model = attempt_load(out)
    assert model.names == ["class0", "class1", "class2"]

    # present now: returned unchanged, no second request
    assert attempt_download(target) == str(target) and server.requests == ["/yolov5s.pt"]


def test_loaders_download_missing_official_weights(server, ckpt_bytes, tmp_path, monkeypatch):
    """attempt_load (used by detect / val / DetectMultiBackend) fetches a missing official file by itself."""
    from engine.checkpoint import attempt_load
    server.routes["/yolov5m6.pt"] = (200, ckpt_bytes, "ok")
    monkeypatch.chdir(tmp_path)
    model = attempt_load("yolov5m6.pt")  # bare name: downloaded into the working directory, as upstream
    assert (tmp_path / "yolov5m6.pt").read_bytes() == ckpt_bytes and model.nc == 3
    assert server.requests == ["/yolov5m6.pt"]


def _assert_failed(err: pytest.ExceptionInfo, url: str, directory: Path, reason: str) -> None:
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)  # scripts report it like any missing --weights file
    assert url in msg and reason in msg
    assert "bash weights/download_weights.sh" in msg and "--weights" in msg  # the manual alternative
    assert list(directory.iterdir()) == []  # neither the target nor a temp file is left behind


def test_http_404_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        attempt_download(tmp_path / "yolov5l.pt")
    _assert_failed(err, f"{server.url}/yolov5l.pt", tmp_path, "HTTP 404")


def test_connection_refused_leaves_nothing(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv(downloads.URL_ENV, url)
    with pytest.raises(DownloadError) as err:
        attempt_download(tmp_path / "yolov5x.pt")
    _assert_failed(err, f"{url}/yolov5x.pt", tmp_path, "cannot connect")


def test_truncated_body_leaves_nothing(server, ckpt_bytes, tmp_path):
    server.routes["/yolov5s6.pt"] = (200, ckpt_bytes, "truncate")
    with pytest.raises(DownloadError) as err:
        attempt_download(tmp_path / "yolov5s6.pt")
    _assert_failed(err, f"{server.url}/yolov5s6.pt", tmp_path, "incomplete")


def test_complete_but_not_a_checkpoint_leaves_nothing(server, tmp_path):
    server.routes["/yolov5s.pt"] = (200, b"<html>rate limited</html>" * 40, "ok")
    with pytest.raises(DownloadError) as err:
        attempt_download(tmp_path / "yolov5s.pt")
    _assert_failed(err, f"{server.url}/yolov5s.pt", tmp_path, "not a loadable checkpoint")


def test_existing_file_is_kept_when_download_fails(server, tmp_path):
    """A failed download never touches other files in the directory."""
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    with pytest.raises(DownloadError):
        attempt_download(tmp_path / "yolov5m.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and other.read_text() == "keep"


def test_unofficial_missing_path_is_one_clear_error(server, tmp_path):
    missing = tmp_path / "my_model.pt"
    with pytest.raises(FileNotFoundError, match=r"^weights not found: '.*my_model\.pt'") as err:
        attempt_download(missing)
    assert not isinstance(err.value, DownloadError)
    assert server.requests == []  # no network access for names that cannot be downloaded
    with pytest.raises(FileNotFoundError, match="weights not found"):
        attempt_download(tmp_path / "sub" / "yolov5s.pt.bak")


def test_detect_cli_reports_missing_weights_in_one_line(tmp_path, caplog):
    import numpy as np
    import cv2

    import detect
    img = tmp_path / "im.jpg"
    cv2.imwrite(str(img), np.full((64, 64, 3), 114, np.uint8))
    missing = tmp_path / "nowhere" / "best.pt"
    rc = detect.cli(["--weights", str(missing), "--source", str(img), "--project", str(tmp_path / "runs")])
    err = caplog.text
    assert rc == 1
    assert f"weights not found: '{missing}'" in err and "Traceback" not in err
    assert not (tmp_path / "nowhere").exists()


def test_google_utils_alias():
    from utils import google_utils
    assert google_utils.attempt_download is attempt_download


# ------------------------------------------------------------------------------------------------- shell script
@pytest.mark.skipif(shutil.which("curl") is None and shutil.which("wget") is None, reason="needs curl or wget")
def test_download_weights_sh(server, ckpt_bytes, tmp_path):
    server.routes["/yolov5s.pt"] = (200, ckpt_bytes, "ok")
    server.routes["/yolov5m.pt"] = (200, ckpt_bytes, "truncate")
    env = dict(os.environ, YOLOV5_WEIGHTS_URL=server.url, YOLOV5_WEIGHTS_DIR=str(tmp_path))
    script = ROOT / "weights" / "download_weights.sh"
    ok = subprocess.run(["bash", str(script), "yolov5s"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "yolov5s.pt").read_bytes() == ckpt_bytes
    bad = subprocess.run(["bash", str(script), "yolov5m", "yolov5l", "resnet50"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1
    for name in ("yolov5m.pt", "yolov5l.pt"):
        assert f"download of {server.url}/{name} failed" in bad.stderr
    assert "'resnet50' is not an official model" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov5s.pt"]  # no partial files
