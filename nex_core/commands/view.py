"""``nex view RUN``: the real-time WebGL2 viewer of a baked MPI, served on 127.0.0.1."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from ..io.errors import ConfigError, NexError
from ..io.run_files import RunFiles


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "view", help="open the baked MPI in a real-time WebGL2 viewer (a local web page)",
        description="Serve the WebGL2 viewer and RUN/baked on http://127.0.0.1 (this machine only) and open "
        "it in the browser. Drag to move the camera within the training cameras' span; a checkbox turns the "
        "view-dependent part off. RUN may also be a baked directory itself. If RUN has no baked MPI yet it "
        "is baked first (as `nex bake RUN` does, 4096-texel atlases, which phones take).")
    p.add_argument("run", help="run directory (or a baked directory holding mpi.json)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL, do not open a browser")
    p.add_argument("--no-bake", action="store_true",
                   help="do not bake a run that has no baked MPI; stop with a message instead")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_view)


def training_span(run_dir: Path) -> dict | None:
    """The training cameras' span for a bake made before the span was recorded; None (saying why on
    stderr) when the run's config or scene cannot be read, and the viewer keeps to a small box around the
    reference camera."""
    from ..export.bake import camera_span
    from ..io import config as config_mod
    from ..runtime.setup import load_scene_for

    try:
        cfg = config_mod.load(RunFiles(run_dir).config)
        scene = load_scene_for(cfg)
    except (NexError, OSError) as exc:  # the loaders' own errors; anything else is a bug and surfaces
        print(f"note: the viewer keeps to a small box around the reference camera: the training cameras' "
              f"span is not in the bake and cannot be read from {run_dir} ({exc})", file=sys.stderr)
        return None
    return camera_span(scene.cameras[scene.ref_id], [scene.cameras[i] for i in scene.train_ids])


def check_port(port: int) -> None:
    """Refuse (ConfigError naming --port) a port outside 0..65535 or one 127.0.0.1 cannot listen on now,
    before anything slow (a bake) runs."""
    from ..export.webview import ViewerServer

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: choose 0..65535 (0: any free port)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # as the server binds: no SO_REUSEADDR
        try:
            probe.bind((ViewerServer.HOST, port))
            probe.listen(1)
        except OSError as exc:
            raise ConfigError(f"--port {port}: cannot listen on {ViewerServer.HOST}:{port} "
                              f"({exc.strerror or exc}); choose another --port, or 0 for any free port") from None


def cmd_view(args: argparse.Namespace) -> int:
    from ..export.webview import ViewerServer, viewer_config
    from ..io.baked import read_layout
    from .baked_input import ensure_baked

    check_port(args.port)
    path = Path(args.run)
    baked = ensure_baked(path, args.no_bake)
    layout = read_layout(baked, verify=False)  # metadata only; the server checks the textures it serves
    span = layout.info.metadata.get("camera_span")
    if span is None and baked != path:
        span = training_span(path)
    try:
        server = ViewerServer(baked, port=args.port, config=viewer_config(baked, span), verbose=args.verbose)
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port} ({exc}); choose another --port") from None
    url = server.url
    info = layout.info
    print(f"NeX viewer: {info.n_planes} planes of {info.mpi_width}x{info.mpi_height} from {baked}")
    print(f"serving on {url}  (this machine only; Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
