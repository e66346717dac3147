"""Outputs of a trained run: video (video.py), the WebGL2 viewer (webview.py + web/), glTF 2.0 for game
engines (gltf.py) and the engine-side shaders (shaders/)."""
