"""PISTACHIO STAND-IN for ComfyUI's main.py (copied to ComfyUI/main.py in a sandbox pod by the tests).

Like ComfyUI it accepts `--listen HOST --port PORT`, imports every folder under custom_nodes/ (skipping *.disabled)
and serves `/system_stats` and `/object_info` (core node names plus each pack's NODE_CLASS_MAPPINGS). It runs no
models. A pack that fails to import is reported under `import_failures`, as ComfyUI logs "IMPORT FAILED".
"""

import argparse
import importlib.util
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CORE = ["CheckpointLoaderSimple", "KSampler", "VAELoader", "LoraLoader", "UNETLoader", "CLIPLoader", "SaveImage"]


def load_custom_nodes(root):
    nodes, failures = {}, {}
    folder = root / "custom_nodes"
    for pack in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not pack.is_dir() or pack.name.endswith(".disabled") or pack.name.startswith((".", "__")):
            continue
        try:
            spec = importlib.util.spec_from_file_location(pack.name, pack / "__init__.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for name in getattr(module, "NODE_CLASS_MAPPINGS", {}):
                nodes[name] = pack.name
        except Exception as exc:
            failures[pack.name] = repr(exc)
    return nodes, failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent
    custom, failures = load_custom_nodes(root)
    info = {name: {"python_module": "nodes"} for name in CORE}
    info.update({name: {"python_module": f"custom_nodes.{pack}"} for name, pack in custom.items()})
    stats = {"system": {"comfyui_version": "pistachio-standin", "pid": os.getpid(), "python": sys.version},
             "import_failures": failures}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/system_stats": stats, "/object_info": info}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if body is not None:
                self.wfile.write(json.dumps(body).encode())

        def log_message(self, *a):
            pass

    print(f"Starting server\n\nTo see the GUI go to: http://{args.listen}:{args.port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0" if args.listen == "0.0.0.0" else args.listen, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
