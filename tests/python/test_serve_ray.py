"""Scale-out on Ray Serve (multilora.serve.ray_serve): a local Ray instance, 2 engine replicas, requests for 4 adapters.

Every response (text, token ids, usage, finish reason; streaming and not) must equal the single-process server's on
the same folder and adapters, and Ray Serve's model multiplexing must have routed by adapter: the response header
``x-multilora-replica`` shows that all requests for one adapter went to the one replica holding it, and the replicas
loaded each adapter set once (with requests spread at random, 6 requests of one adapter would land on both replicas
with probability 31/32; the test allows the router a moment after each adapter's first use to learn where it is).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
try:
    with warnings.catch_warnings():  # Ray's own modules use APIs that their dependencies deprecate
        warnings.simplefilter("ignore")
        import ray
        from ray import serve
except ImportError:  # the default test install leaves Ray out (see README: Serving)
    pytest.skip(
        "Ray Serve is not installed (pip install 'multilora[ray]' to run the scale-out test)", allow_module_level=True
    )

from serve_support import ADAPTER, BASE, PROMPTS, prepare_folder  # noqa: E402

import multilora as ml  # noqa: E402
from multilora.serve import BackgroundServer, ServeConfig, free_port  # noqa: E402
from multilora.serve.ray_serve import APP_NAME, REPLICA_HEADER, build_ray_app  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not hasattr(ml, "Engine"), reason="needs the request engine (ml.Engine)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.slow,
]

TIMEOUT = 60.0
NEW = 12
MODELS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ray")
    folder = prepare_folder(tmp)
    adapters = {}
    for name, src in (("a", "a"), ("b", "b"), ("c", "a"), ("d", "b")):
        adapters[name] = str(tmp / f"{name}.onnx_adapter")
        shutil.copy(ADAPTER[src], adapters[name])
    config = ServeConfig(str(folder), adapters=adapters, max_batch_size=4)
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_ray_app(config, replicas=2, max_adapters_per_replica=4), name=APP_NAME, route_prefix="/")
        with BackgroundServer(config) as single:
            yield {"ray": f"http://127.0.0.1:{port}", "single": single.url}
    finally:
        serve.shutdown()
        ray.shutdown()


def test_multilora_serve_ray_command(tmp_path: Path) -> None:
    """``multilora serve --ray --replicas 2`` (its own local Ray; runs before the fixture below starts one here):
    the routes answer through the ingress, SIGTERM shuts Serve and Ray down and exits 0."""
    folder = prepare_folder(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multilora.cli",
            "serve",
            str(folder),
            "--adapter",
            f"a={ADAPTER['a']}",
            "--ray",
            "--replicas",
            "2",
            "--port",
            str(port),
            "--api-key",
            "k",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the Ray server did not start"
            time.sleep(0.5)
        headers = {"Authorization": "Bearer k"}
        body = {"model": "a", "prompt": PROMPTS[0], "max_tokens": NEW, "temperature": 0}
        r = httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers[REPLICA_HEADER]
        assert httpx.post(url + "/v1/completions", json=body, timeout=TIMEOUT).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def _strip(body: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def _stream(http: Any, url: str, body: Dict[str, Any]) -> List[Dict[str, Any]]:
    with http.stream("POST", url + "/v1/completions", json=dict(body, stream=True)) as r:
        assert r.status_code == 200
        lines = [line[len("data: ") :] for line in r.iter_lines() if line]
    assert lines[-1] == "[DONE]"
    return [_strip(json.loads(x)) for x in lines[:-1]]


def test_replicas_answer_like_one_server_and_route_by_adapter(setup: Dict[str, Any]) -> None:
    seen: Dict[str, List[str]] = {m: [] for m in MODELS}
    with httpx.Client(timeout=TIMEOUT) as http:
        # First use: each adapter set is loaded by the replica the router picks; the replicas then report what they
        # hold to Ray Serve's controller, which tells the router (every 0.1 s, asynchronously): give it a moment.
        first = {}
        for model in MODELS:
            body = {"model": model, "prompt": PROMPTS[0], "max_tokens": 2, "temperature": 0}
            got = http.post(setup["ray"] + "/v1/completions", json=body)
            assert got.status_code == 200, got.text
            first[model] = got.headers[REPLICA_HEADER]
        time.sleep(3.0)
        for _round in range(3):
            for model in MODELS:
                for p in (0, 1):
                    body = {
                        "model": model,
                        "prompt": PROMPTS[p],
                        "max_tokens": NEW,
                        "temperature": 0,
                        "return_token_ids": True,
                    }
                    got = http.post(setup["ray"] + "/v1/completions", json=body)
                    want = http.post(setup["single"] + "/v1/completions", json=body)
                    assert got.status_code == want.status_code == 200, got.text
                    assert _strip(got.json()) == _strip(want.json())
                    seen[model].append(got.headers[REPLICA_HEADER])
        for model in MODELS:  # streaming, a weighted mix and the base model too
            body = {"model": model, "prompt": PROMPTS[2], "max_tokens": NEW, "temperature": 0}
            assert _stream(http, setup["ray"], body) == _stream(http, setup["single"], body)
        mix = {
            "model": "a",
            "prompt": PROMPTS[1],
            "max_tokens": NEW,
            "temperature": 0,
            "adapters": [{"name": "a", "weight": 1.0}, {"name": "d", "weight": 0.5}],
        }
        base = {"model": BASE, "prompt": PROMPTS[0], "max_tokens": NEW, "temperature": 0}
        for body in (mix, base):
            got = http.post(setup["ray"] + "/v1/completions", json=body)
            assert _strip(got.json()) == _strip(http.post(setup["single"] + "/v1/completions", json=body).json())
        # errors come back in the same shape
        for body, status in (({"model": "nope", "prompt": "the"}, 404), ({"model": "a", "prompt": "the", "n": 2}, 400)):
            got = http.post(setup["ray"] + "/v1/completions", json=body)
            want = http.post(setup["single"] + "/v1/completions", json=body)
            assert got.status_code == want.status_code == status
            assert got.json() == want.json()
        models = {m["id"]: m.get("parent") for m in http.get(setup["ray"] + "/v1/models").json()["data"]}
        assert models == {BASE: None, "a": BASE, "b": BASE, "c": BASE, "d": BASE}
        metrics = http.get(setup["ray"] + "/metrics").text
    print("first replica per adapter:", first, "then:", {m: sorted(set(r)) for m, r in seen.items()})
    for model, replicas in seen.items():
        assert set(replicas) == {first[model]}, f"requests for {model} went to {replicas}, it was loaded on {first}"
    assert "multilora_ray_routed_total" in metrics
