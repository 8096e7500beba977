"""The notebook interface: `make course` starts JupyterLab, which lists the lessons and runs them.

The test starts JupyterLab exactly as README command 1 does (`make course`: loopback, the
notebooks folder), on a free port with a token, then uses the server's REST and kernel APIs as the
browser front end would: the contents API must list every lesson, a lesson must open, its first
code cell must run in a kernel and print what it prints in the course, and the server must stop
cleanly when asked.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def api(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = free_port(), secrets.token_hex(16)
    # A config folder of its own, so that a user's Jupyter settings cannot change what is tested.
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path_factory.mktemp("jupyter_config"))}
    proc = subprocess.Popen(["make", "--no-print-directory", "course", f"PORT={port}",
                             f"LAB_EXTRA=--no-browser --IdentityProvider.token={token}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    server = Lab(port, token)
    deadline = time.time() + 120
    while True:
        try:
            server.api("GET", "/api/status")
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"JupyterLab did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
    server.proc = proc
    yield server
    if proc.poll() is None:                                 # a failed test left it running
        os.killpg(proc.pid, signal.SIGKILL)


def test_the_server_listens_on_loopback_only_and_wants_its_token(lab):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{lab.base}/api/contents", timeout=10)
    assert err.value.code == 403                           # no token, no contents
    host = socket.gethostbyname(socket.gethostname())
    if not host.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((host, int(lab.base.rsplit(":", 1)[1])), timeout=2).close()


def test_the_contents_api_lists_every_lesson(lab):
    status, listing = lab.api("GET", "/api/contents/")
    assert status == 200
    names = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    assert LESSONS and names == LESSONS


async def _run_cell(lab: Lab, kernel_id: str, code: str) -> tuple[str, str]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws_url = lab.base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {lab.token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    stdout, status, idle = [], None, False
    while status is None or not idle:
        msg = json.loads(await asyncio.wait_for(conn.read_message(), timeout=300))
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            stdout.append(content["text"])
        elif kind == "error":
            stdout.append("\n".join(content["traceback"]))
        elif kind == "execute_reply":
            status = content["status"]
        elif kind == "status":
            idle = content["execution_state"] == "idle"
    conn.close()
    return status, "".join(stdout)


def test_a_lesson_opens_and_its_first_cell_runs_in_a_kernel(lab):
    name = LESSONS[0]
    status, model = lab.api("GET", f"/api/contents/{name}?content=1")
    assert status == 200 and model["type"] == "notebook"
    nb = nbformat.from_dict(model["content"])
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    first = next(c for c in nb.cells if c.cell_type == "code")

    status, session = lab.api("POST", "/api/sessions", {"path": name, "type": "notebook", "name": name,
                                                         "kernel": {"name": "python3"}})
    assert status == 201
    kernel = session["kernel"]["id"]
    result, out = asyncio.run(_run_cell(lab, kernel, first.source))
    assert result == "ok", out
    # The cell's names live on in the kernel, which runs in the notebooks folder with the course's
    # environment (the budget the tests pin, the ftlib of this repository).
    result, out = asyncio.run(_run_cell(lab, kernel, "import os; print(budget.name, device.type); "
                                                      "print(os.getcwd()); print(ftlib.__file__)"))
    assert result == "ok", out
    lines = out.splitlines()
    assert lines[0].split()[0] == os.environ["FTLIB_BUDGET"]
    assert lines[1] == str(ROOT / "notebooks") and lines[2].startswith(str(ROOT / "ftlib"))
    result, out = asyncio.run(_run_cell(lab, kernel, "1/0"))
    assert result == "error" and "ZeroDivisionError" in out     # an error comes back as one
    assert lab.api("DELETE", f"/api/sessions/{session['id']}")[0] == 204


def test_the_server_stops_cleanly(lab):
    assert lab.api("POST", "/api/shutdown")[0] in (200, 202, 204)
    rc = lab.proc.wait(timeout=60)
    log = lab.proc.stdout.read()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
