"""PISTACHIO SANDBOX STAND-IN for ComfyUI's main.py: no models run here, only the HTTP surface the tool checks.

Accepts ComfyUI's command line (`--listen [IP]`, `--port N` and a few common flags), imports every folder under
custom_nodes/ (skipping *.disabled) like ComfyUI does, and serves:
  GET /system_stats    {"system": {"comfyui_version", "pid", "python_version", ...}, "devices": [...]}
  GET /object_info     every node type: core ones (nodes.py, with input specs for the Wan graph's nodes) + each
                       pack's NODE_CLASS_MAPPINGS;  GET /object_info/<class>: one of them
  POST /prompt         {"prompt": <API-format graph>, "client_id"?}: validated like ComfyUI (execution.py) ->
                       {"prompt_id", "number", "node_errors"} or 400 {"error", "node_errors"}; queued, run in order
  GET /queue           {"queue_running": [[number, prompt_id, prompt, extra_data, outputs]], "queue_pending": [...]}
  GET /history/<id>    {} until it ran, then {id: {"prompt", "outputs", "status", "meta"}}
  GET /view?filename=&subfolder=&type=output   an output file
  GET /models          the model folders;  GET /models/<folder>: the files in it (as ComfyUI's /models routes)
  GET /                a page saying this is the stand-in
A pack that fails to import is listed under "import_failures" (ComfyUI logs "IMPORT FAILED").

Ports: the sandbox runs every pod on the host's network, so it tells the pod which host port stands for a pod
port in PISTACHIO_HTTP_PORT_<port> (RunPod's proxy does this for real pods); without it, --port is bound as given.
"""

import argparse
import importlib.util
import json
import mimetypes
import os
import queue
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import comfyui_version
import execution
from nodes import CORE_NODES, SPECS

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


class Runner:
    """ComfyUI's prompt queue: validated prompts run one at a time, in order, by one worker thread."""

    def __init__(self, root, out_dir):
        self.root, self.out_dir = root, out_dir
        self.lock = threading.Lock()
        self.pending, self.running, self.done = [], None, {}
        self.number = 0
        self.todo = queue.Queue()
        knobs = {}
        scenario = os.environ.get("PISTACHIO_STANDIN_SCENARIO")
        if scenario and Path(scenario).is_file():
            knobs = json.loads(Path(scenario).read_text()).get("comfyui", {})
        self.seconds_per_frame = float(knobs.get("seconds_per_frame", 0.0))
        threading.Thread(target=self.work, daemon=True).start()

    def submit(self, body, known):
        prompt = body["prompt"]
        ok, error, outputs, node_errors = execution.validate_prompt(self.root, prompt, known)
        if not ok:
            print(f"invalid prompt: {error}", flush=True)
            return 400, {"error": error, "node_errors": node_errors}
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        extra["create_time"] = int(time.time() * 1000)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        with self.lock:
            number = self.number
            self.number += 1
            item = [number, prompt_id, prompt, extra, outputs]
            self.pending.append(item)
        self.todo.put(item)
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}

    def work(self):
        while True:
            item = self.todo.get()
            with self.lock:
                self.pending.remove(item)
                self.running = item
            _, prompt_id, prompt, _, outputs = item
            status, ui, messages = execution.execute(self.root, self.out_dir, prompt, outputs,
                                                     self.seconds_per_frame)
            for _, message in messages:
                message["prompt_id"] = prompt_id
            entry = {"prompt": item, "outputs": ui,
                     "status": {"status_str": status, "completed": status == "success", "messages": messages},
                     "meta": {o: {"node_id": o, "display_node": o, "parent_node": None, "real_node_id": o}
                              for o in ui}}
            with self.lock:
                self.done[prompt_id] = entry
                self.running = None

    def history(self, prompt_id):
        with self.lock:
            if prompt_id is None:
                return dict(self.done)
            return {prompt_id: self.done[prompt_id]} if prompt_id in self.done else {}

    def queue(self):
        with self.lock:
            return {"queue_running": [self.running] if self.running else [], "queue_pending": list(self.pending)}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    custom, failures = load_custom_nodes(ROOT)
    out_dir = Path(args.output_directory) if args.output_directory else ROOT / "output"
    runner = Runner(ROOT, out_dir)

    def info():
        nodes = {name: ({**execution.object_info(ROOT, name)} if name in SPECS else
                        {"name": name, "python_module": "nodes"}) for name in CORE_NODES}
        nodes.update({name: {"name": name, "python_module": f"custom_nodes.{pack}"} for name, pack in custom.items()})
        return nodes
    stats = {
        "system": {"os": os.name, "python_version": sys.version, "comfyui_version": comfyui_version.__version__,
                   "embedded_python": False, "pid": os.getpid(), "argv": sys.argv},
        "devices": [{"name": "cpu (pistachio sandbox stand-in)", "type": "cpu", "index": None}],
        "import_failures": failures,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            if path == "/":
                return self.reply(200, b"<html><body>ComfyUI (pistachio sandbox stand-in)</body></html>", "text/html")
            if path == "/view":
                return self.view(parse_qs(url.query))
            if path == "/models":
                body = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_dir())
            elif path.startswith("/models/"):
                body = model_files(path[len("/models/"):])
            elif path.startswith("/object_info/"):
                name = path[len("/object_info/"):]
                nodes = info()
                body = {name: nodes[name]} if name in nodes else {}
            elif path.startswith("/history/"):
                body = runner.history(path[len("/history/"):])
            elif path == "/history":
                body = runner.history(None)
            else:
                body = {"/system_stats": stats, "/object_info": info() if path == "/object_info" else None,
                        "/queue": runner.queue()}.get(path)
            if body is None:
                return self.reply(404, b"404: Not Found", "text/plain")
            return self.reply(200, json.dumps(body).encode(), "application/json")

        def do_POST(self):
            path = urlsplit(self.path).path.rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self.reply(400, b"400: Invalid JSON", "text/plain")
            if path != "/prompt":
                return self.reply(404, b"404: Not Found", "text/plain")
            if "prompt" not in body:
                error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                         "extra_info": {}}
                return self.reply(400, json.dumps({"error": error, "node_errors": {}}).encode(), "application/json")
            status, answer = runner.submit(body, set(info()))
            return self.reply(status, json.dumps(answer).encode(), "application/json")

        def view(self, query):
            name = (query.get("filename") or [""])[0]
            sub = (query.get("subfolder") or [""])[0]
            kind = (query.get("type") or ["output"])[0]
            base = {"output": out_dir, "input": ROOT / "input", "temp": ROOT / "temp"}.get(kind)
            if base is None or not name or "/" in name or ".." in Path(sub).parts:
                return self.reply(400, b"400: Bad Request", "text/plain")
            path = (base / sub / name).resolve()
            if not path.is_file() or not str(path).startswith(str(base.resolve())):
                return self.reply(404, b"404: Not Found", "text/plain")
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return self.reply(200, path.read_bytes(), kind)

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
