"""PISTACHIO SANDBOX STAND-IN for ComfyUI's main.py: no models run here, only the HTTP surface the tool checks.

Accepts ComfyUI's command line (`--listen [IP]`, `--port N` and a few common flags), imports every folder under
custom_nodes/ (skipping *.disabled) like ComfyUI does, and serves:
  GET /system_stats    {"system": {"comfyui_version", "pid", "python_version", ...}, "devices": [...]}
  GET /object_info     every node type: core ones (nodes.py) + each pack's NODE_CLASS_MAPPINGS
  GET /queue           {"queue_running": [], "queue_pending": []}
  GET /models          the model folders;  GET /models/<folder>: the files in it (as ComfyUI's /models routes)
  GET /                a page saying this is the stand-in
A pack that fails to import is listed under "import_failures" (ComfyUI logs "IMPORT FAILED").

Ports: the sandbox runs every pod on the host's network, so it tells the pod which host port stands for a pod
port in PISTACHIO_HTTP_PORT_<port> (RunPod's proxy does this for real pods); without it, --port is bound as given.
"""

import argparse
import importlib.util
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import comfyui_version
from nodes import CORE_NODES

ROOT = Path(__file__).resolve().parent


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="main.py")
    parser.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--disable-auto-launch", action="store_true")
    parser.add_argument("--extra-model-paths-config", nargs="+", action="append")
    parser.add_argument("--output-directory")
    parser.add_argument("--preview-method", choices=["none", "auto", "latent2rgb", "taesd"])
    for flag in ("--lowvram", "--normalvram", "--highvram", "--cpu", "--disable-smart-memory"):
        parser.add_argument(flag, action="store_true")
    return parser.parse_args(argv)


def load_custom_nodes(root):
    nodes, failures = {}, {}
    folder = root / "custom_nodes"
    sys.path.insert(0, str(folder))
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
            print(f"Cannot import {pack} module for custom nodes: {exc!r}\nIMPORT FAILED: {pack}", flush=True)
            failures[pack.name] = repr(exc)
    return nodes, failures


def model_files(folder):
    base = ROOT / "models" / folder
    if not base.is_dir() or folder.startswith("."):
        return None
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                  if p.is_file() and not p.name.startswith((".", "put_")))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    custom, failures = load_custom_nodes(ROOT)
    info = {name: {"name": name, "python_module": "nodes"} for name in CORE_NODES}
    info.update({name: {"name": name, "python_module": f"custom_nodes.{pack}"} for name, pack in custom.items()})
    stats = {
        "system": {"os": os.name, "python_version": sys.version, "comfyui_version": comfyui_version.__version__,
                   "embedded_python": False, "pid": os.getpid(), "argv": sys.argv},
        "devices": [{"name": "cpu (pistachio sandbox stand-in)", "type": "cpu", "index": None}],
        "import_failures": failures,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/":
                return self.reply(200, b"<html><body>ComfyUI (pistachio sandbox stand-in)</body></html>", "text/html")
            if path == "/models":
                body = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_dir())
            elif path.startswith("/models/"):
                body = model_files(path[len("/models/"):])
            else:
                body = {"/system_stats": stats, "/object_info": info,
                        "/queue": {"queue_running": [], "queue_pending": []}}.get(path)
            if body is None:
                return self.reply(404, b"404: Not Found", "text/plain")
            return self.reply(200, json.dumps(body).encode(), "application/json")

        def reply(self, status, data, kind):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    port = int(os.environ.get(f"PISTACHIO_HTTP_PORT_{args.port}") or args.port)
    host = "0.0.0.0" if "0.0.0.0" in args.listen.split(",") else args.listen.split(",")[0]
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"Starting server\n\nTo see the GUI go to: http://{host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
