"""The local web server behind ``nex view``: the WebGL2 viewer (``export/web/``) plus one baked MPI.

Torch-free. Bound to 127.0.0.1 only, GET/HEAD only, and it serves nothing but an allow-list: the
viewer's own files, ``config.json`` (generated: the camera span and the title), the baked directory's
``mpi.json`` and the textures that mpi.json lists. Any other path, whatever its spelling (``..``,
percent-encoded, backslashes, absolute), is answered 404 without touching the file system; requests
whose ``Host`` header is not this server's loopback address are refused (403), which stops a page on
another site from reading the files through DNS rebinding.

For the tests the same server can also mount directories (``mounts``: URL prefix -> directory), still
resolved strictly inside the directory.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..io.baked import MANIFEST, read_layout

WEB_DIR = Path(__file__).resolve().parent / "web"
SHADER_DIR = Path(__file__).resolve().parent / "shaders"
# URL path -> file of the viewer (nothing else of the package is reachable).
VIEWER_FILES = {
    "/": WEB_DIR / "viewer.html",
    "/index.html": WEB_DIR / "viewer.html",
    "/viewer.html": WEB_DIR / "viewer.html",
    "/viewer.js": WEB_DIR / "viewer.js",
    "/mpi.vert": WEB_DIR / "mpi.vert",
    "/mpi.frag": WEB_DIR / "mpi.frag",
    "/blit.frag": WEB_DIR / "blit.frag",
    "/shaders/nex_mpi.glsl": SHADER_DIR / "nex_mpi.glsl",
}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".json": "application/json", ".png": "image/png",
         ".glb": "model/gltf-binary", ".vert": "text/plain; charset=utf-8", ".frag": "text/plain; charset=utf-8",
         ".glsl": "text/plain; charset=utf-8", ".map": "application/json"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
       "connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def baked_files(baked_dir: Path) -> dict[str, Path]:
    """URL path -> file for a baked directory: ``/baked/mpi.json`` and every texture it lists (checked)."""
    layout = read_layout(baked_dir)
    root = Path(baked_dir)
    files = {f"/baked/{MANIFEST}": root / MANIFEST}
    for spec in layout.textures:
        files[f"/baked/{spec.file}"] = layout.path(spec)
    return files


def _clean_url_path(raw: str) -> str | None:
    """The request target's path, percent-decoded, if it is a plain absolute path; None if it is not."""
    path = unquote(urlsplit(raw).path, errors="strict") if raw.startswith("/") else None
    if path is None or "\\" in path or "\x00" in path or path.startswith("//"):
        return None
    parts = path.split("/")
    if any(p in ("..", ".") for p in parts):
        return None
    return path


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    server_version = "nex-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _deny(self, status: HTTPStatus, head: bool) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            self._deny(HTTPStatus.FORBIDDEN, head)
            return
        try:
            path = _clean_url_path(self.path)
        except UnicodeDecodeError:
            path = None
        if path is None:
            self._deny(HTTPStatus.NOT_FOUND, head)
            return
        if path in self.server.generated:
            body, ctype = self.server.generated[path]
        else:
            file = self.server.resolve(path)
            if file is None:
                self._deny(HTTPStatus.NOT_FOUND, head)
                return
            try:
                body = file.read_bytes()
            except OSError:
                self._deny(HTTPStatus.NOT_FOUND, head)
                return
            ctype = TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        if ctype.startswith("text/html") and self.server.csp:
            self.send_header("Content-Security-Policy", self.server.csp)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address, files: dict[str, Path], mounts: dict[str, Path],
                 generated: dict[str, tuple[bytes, str]], verbose: bool, csp: str | None):
        super().__init__(address, _Handler)
        self.csp = csp
        self.files = dict(files)
        self.mounts = {prefix: Path(d).resolve() for prefix, d in mounts.items()}
        self.generated = dict(generated)
        self.verbose = verbose
        port = self.server_address[1]
        self.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    def resolve(self, path: str) -> Path | None:
        """The file a clean URL path names, or None: exact allow-list first, then the mounts."""
        if path in self.files:
            f = self.files[path]
            return f if f.is_file() else None
        for prefix, root in self.mounts.items():
            if path.startswith(prefix):
                rel = posixpath.normpath(path[len(prefix):])
                if rel.startswith("/") or rel.startswith("..") or rel in ("", "."):
                    return None
                full = (root / rel).resolve()
                try:
                    full.relative_to(root)
                except ValueError:
                    return None
                return full if full.is_file() else None
        return None


class ViewerServer:
    """A loopback HTTP server (``127.0.0.1``) for the viewer and a baked MPI, run on a background thread.

    ``port=0`` picks a free port. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    HOST = "127.0.0.1"

    def __init__(self, baked_dir: Path | None = None, port: int = 0, config: dict[str, Any] | None = None,
                 extra_files: dict[str, Path] | None = None, mounts: dict[str, Path] | None = None,
                 verbose: bool = False):
        files: dict[str, Path] = {}
        generated: dict[str, tuple[bytes, str]] = {}
        if baked_dir is not None:
            files.update(VIEWER_FILES)
            files.update(baked_files(Path(baked_dir)))
            generated["/config.json"] = (json.dumps(config or {}).encode(), "application/json")
        files.update(extra_files or {})
        self.httpd = _Server((self.HOST, int(port)), files, mounts or {}, generated, verbose,
                             CSP if baked_dir is not None else None)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[0], self.port

    @property
    def url(self) -> str:
        return f"http://{self.HOST}:{self.port}/"

    def start(self) -> "ViewerServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="nex-view", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(5)
            self.thread = None
        self.httpd.server_close()

    def __enter__(self) -> "ViewerServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def viewer_config(baked_dir: Path, camera_span: dict | None = None, title: str | None = None) -> dict[str, Any]:
    """What the viewer reads from ``config.json``: the camera span (reference frame, OpenCV axes) and a title."""
    layout = read_layout(baked_dir, verify=False)  # metadata only; baked_files checks the textures
    meta = layout.info.metadata
    span = camera_span or meta.get("camera_span")
    out: dict[str, Any] = {"title": title or f"NeX — {meta.get('scene') or meta.get('run') or Path(baked_dir).name}"}
    if isinstance(span, dict) and "min" in span and "max" in span:
        out["camera_span"] = {"min": [float(x) for x in span["min"]], "max": [float(x) for x in span["max"]]}
    return out
