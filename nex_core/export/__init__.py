"""Outputs of a trained run: the bake into textures for real-time renderers (bake.py, writing the format of
``nex_core.io.baked``), video (video.py), the WebGL2 viewer (webview.py + web/), glTF 2.0 for game engines
(gltf.py) and the engine-side shaders (shaders/)."""
