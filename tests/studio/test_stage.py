"""`lmlab studio` as a user starts it: the printed link, the token on every request, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from lmlab.serve.bench import free_port
from lmlab.stages.studio import Config, is_loopback

from .conftest import make_run, wait_for


def test_loopback_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]")
    assert is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert not is_loopback("my-host")  # a name may resolve anywhere
    assert Config(host="0.0.0.0", token="t").validate() == []
    assert Config().validate() == []
    assert Config(host="0.0.0.0").validate()[0].startswith("token: host 0.0.0.0")


def test_studio_serves_with_a_token_and_stops_on_ctrl_c(tmp_path):
    make_run(tmp_path, "a", summary=True)
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.Popen([sys.executable, "-m", "lmlab", "studio", f"root={tmp_path}",
                          f"port={port}", "token=tok", "log_level=error"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token=tok" in line and str(tmp_path) in line
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(url + "/api/runs", timeout=2)
            except httpx.TransportError:
                return None

        assert wait_for(up, what="the studio").status_code == 401
        ok = httpx.get(url + "/api/runs", headers={"Authorization": "Bearer tok"})
        assert [r["name"] for r in ok.json()["rows"]] == ["a"]
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
    assert rc == 0, p.stderr.read()
