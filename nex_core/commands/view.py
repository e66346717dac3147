"""``nex view RUN``: the real-time WebGL2 viewer of a baked MPI, served on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    """The training cameras' span for a bake made before the span was recorded (None if unknown)."""
    try:
        from ..export.bake import camera_span
        from ..io import config as config_mod
        from ..runtime.setup import load_scene_for

        cfg = config_mod.load(RunFiles(run_dir).config)
        scene = load_scene_for(cfg)
        return camera_span(scene.cameras[scene.ref_id], [scene.cameras[i] for i in scene.train_ids])
    except Exception:  # the viewer falls back to a small box around the reference camera
        return None


def cmd_view(args: argparse.Namespace) -> int:
    from ..export.webview import ViewerServer, viewer_config
    from ..io.baked import read_layout
    from ..io.errors import ConfigError
    from .baked_input import ensure_baked

    path = Path(args.run)
    baked = ensure_baked(path, args.no_bake)
    layout = read_layout(baked, verify=False)  # metadata only; the server checks the textures it serves
    span = layout.info.metadata.get("camera_span")
    if span is None and baked != path:
        span = training_span(path)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: choose 0..65535 (0: any free port)")
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
