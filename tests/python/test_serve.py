"""The OpenAI-compatible server (multilora.serve) started for real on 127.0.0.1 and a free port, driven with the
official ``openai`` client and, for raw HTTP edge cases, ``httpx``.

Every generated token is checked against the same request generated alone by ml.Generator on the unprepared fixture
folder (serve_support.Reference); the server runs the request engine on the folder prepared for per-row batching.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from serve_support import (  # noqa: E402
    ADAPTER,
    BASE,
    CONTEXT,
    EOS,
    PROMPT_IDS,
    PROMPTS,
    Reference,
    chat_text,
    prepare_folder,
)

import multilora as ml  # noqa: E402
from multilora.serve import BackgroundServer, ServeConfig, free_port  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(ml, "Engine"), reason="needs the request engine (ml.Engine)")

KEY = "test-key-123"
NEW = 12
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_folder(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def ref() -> Iterator[Reference]:
    r = Reference()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[BackgroundServer]:
    config = ServeConfig(str(folder), adapters=dict(ADAPTER), api_key=KEY, max_batch_size=8, max_body_bytes=64 * 1024)
    with BackgroundServer(config) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)


def _raw(server: BackgroundServer, key: str = KEY) -> Any:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)


def _names(model: str) -> List[str]:
    return [] if model == BASE else [model]


# ------------------------------------------------------------------------------------------------ models


def test_models_lists_base_and_adapters(client: Any) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {BASE, "a", "b"}
    assert models["a"].model_dump()["parent"] == BASE
    assert models["b"].model_dump()["parent"] == BASE
    assert models[BASE].model_dump()["parent"] is None


# ------------------------------------------------------------------------------------------------ completions


@pytest.mark.parametrize("model", [BASE, "a", "b"])
@pytest.mark.parametrize("p", [0, 1, 2])
def test_completion_equals_generation_alone(client: Any, ref: Reference, model: str, p: int) -> None:
    out = client.completions.create(
        model=model, prompt=PROMPTS[p], max_tokens=NEW, temperature=0, extra_body={"return_token_ids": True}
    )
    expected = ref.tokens(PROMPT_IDS[p], _names(model), NEW)
    choice = out.choices[0].model_dump()
    assert choice["token_ids"] == expected
    assert choice["text"] == ref.text(PROMPT_IDS[p], expected)
    assert choice["finish_reason"] == ("stop" if expected[-1] == EOS else "length")
    assert out.usage.prompt_tokens == len(PROMPT_IDS[p])
    assert out.usage.completion_tokens == len(expected)
    assert out.usage.total_tokens == len(PROMPT_IDS[p]) + len(expected)
    assert out.model == model and out.object == "text_completion"


def test_prompt_as_token_ids(client: Any, ref: Reference) -> None:
    for prompt in (PROMPT_IDS[2], [PROMPT_IDS[2]]):
        out = client.completions.create(
            model="a", prompt=prompt, max_tokens=NEW, temperature=0, extra_body={"return_token_ids": True}
        )
        assert out.choices[0].model_dump()["token_ids"] == ref.tokens(PROMPT_IDS[2], ["a"], NEW)


@pytest.mark.parametrize("model", [BASE, "a", "b"])
def test_streaming_equals_non_streaming(client: Any, ref: Reference, model: str) -> None:
    expected = ref.tokens(PROMPT_IDS[0], _names(model), NEW)
    chunks = list(
        client.completions.create(
            model=model,
            prompt=PROMPTS[0],
            max_tokens=NEW,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == ref.text(PROMPT_IDS[0], expected)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop" if expected[-1] == EOS else "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(expected)
    assert len({c.id for c in chunks}) == 1


def test_sse_wire_format(server: BackgroundServer) -> None:
    with _raw(server) as http:
        with http.stream(
            "POST",
            "/v1/completions",
            json={"model": "a", "prompt": PROMPTS[1], "max_tokens": 4, "temperature": 0, "stream": True},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        json.loads(line[len("data: ") :])


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0, 0.5]])
def test_weighted_adapter_mix(client: Any, ref: Reference, weights: List[float]) -> None:
    body = {
        "adapters": [{"name": "a", "weight": weights[0]}, {"name": "b", "weight": weights[1]}],
        "return_token_ids": True,
    }
    out = client.completions.create(model="a", prompt=PROMPTS[1], max_tokens=NEW, temperature=0, extra_body=body)
    expected = ref.tokens(PROMPT_IDS[1], ["a", "b"], NEW, weights)
    assert out.choices[0].model_dump()["token_ids"] == expected
    assert expected != ref.tokens(PROMPT_IDS[1], ["a"], NEW)  # the mix is not adapter a alone


def test_concurrent_clients_with_different_adapters(server: BackgroundServer, ref: Reference) -> None:
    """16 clients at once (more than the 8 rows: some wait for a row), each its own adapter set and prompt, streaming
    and not: each gets exactly the tokens of its request generated alone."""
    sets: List[List[str]] = [[], ["a"], ["b"], ["a", "b"]]
    jobs = [(sets[i % 4], i % 3, i % 2 == 0) for i in range(16)]

    def one(job: Any) -> Any:
        names, p, stream = job
        extra: Dict[str, Any] = {"return_token_ids": True}
        if len(names) > 1:
            extra["adapters"] = [{"name": n} for n in names]
        body: Dict[str, Any] = {
            "model": names[0] if len(names) == 1 else BASE,
            "prompt": PROMPTS[p],
            "max_tokens": NEW,
            "temperature": 0,
            "extra_body": extra,
        }
        cli = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)
        if stream:
            chunks = list(cli.completions.create(stream=True, **body))
            ids = [t for c in chunks for t in (c.choices[0].model_dump().get("token_ids") or [])]
            return ids, "".join(c.choices[0].text for c in chunks)
        out = cli.completions.create(**body)
        return out.choices[0].model_dump()["token_ids"], out.choices[0].text

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, jobs))
    for (names, p, _), (ids, text) in zip(jobs, results):
        expected = ref.tokens(PROMPT_IDS[p], names, NEW)
        assert ids == expected, (names, p)
        assert text == ref.text(PROMPT_IDS[p], expected)


def test_stop_string_ends_the_text(client: Any, ref: Reference) -> None:
    expected = ref.tokens(PROMPT_IDS[2], [], NEW)
    full = ref.text(PROMPT_IDS[2], expected)
    words = full.split()
    stop = words[3]
    cut = full[: full.find(stop)]
    out = client.completions.create(model=BASE, prompt=PROMPTS[2], max_tokens=NEW, temperature=0, stop=[stop, "zzz"])
    assert out.choices[0].text == cut and out.choices[0].finish_reason == "stop"
    chunks = list(
        client.completions.create(model=BASE, prompt=PROMPTS[2], max_tokens=NEW, temperature=0, stop=stop, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sampling_with_a_seed_equals_generation_alone(client: Any, ref: Reference) -> None:
    """temperature > 0 samples with top_k 0 (no top-k limit, as OpenAI), the given top_p and seed."""
    outs = []
    for seed in (7, 7, 8):
        out = client.completions.create(
            model="a",
            prompt=PROMPTS[0],
            max_tokens=NEW,
            temperature=0.8,
            top_p=0.9,
            seed=seed,
            extra_body={"return_token_ids": True},
        )
        outs.append(out.choices[0].model_dump()["token_ids"])
    for seed, got in zip((7, 7, 8), outs):
        expected = ref.tokens(PROMPT_IDS[0], ["a"], NEW, do_sample=True, temperature=0.8, top_p=0.9, top_k=0, seed=seed)
        assert got == expected
    assert outs[0] != ref.tokens(PROMPT_IDS[0], ["a"], NEW)  # not greedy


# ------------------------------------------------------------------------------------------------ chat


def test_chat_completion_uses_the_template(client: Any, ref: Reference) -> None:
    messages = [{"role": "system", "content": "one of them"}, {"role": "user", "content": "how many of them can see"}]
    ids = ref.encode(chat_text(messages), add_special_tokens=False)
    max_new = 8
    expected = ref.tokens(ids, ["b"], max_new)
    out = client.chat.completions.create(
        model="b", messages=messages, max_tokens=max_new, temperature=0, extra_body={"return_token_ids": True}
    )
    choice = out.choices[0]
    assert choice.model_dump()["token_ids"] == expected
    assert choice.message.role == "assistant" and choice.message.content == ref.text(ids, expected)
    assert out.usage.prompt_tokens == len(ids)
    assert out.object == "chat.completion"
    chunks = list(
        client.chat.completions.create(model="b", messages=messages, max_tokens=max_new, temperature=0, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ref.text(ids, expected)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_without_max_tokens_fills_the_context(client: Any, ref: Reference) -> None:
    messages = [{"role": "user", "content": "the people said"}]
    ids = ref.encode(chat_text(messages), add_special_tokens=False)
    out = client.chat.completions.create(model="a", messages=messages, temperature=0)
    expected = ref.tokens(ids, ["a"], CONTEXT - len(ids))
    assert out.usage.completion_tokens == len(expected)


def test_chat_template_errors_are_400(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="a", messages=[{"role": "wizard", "content": "x"}], max_tokens=2)
    assert "unknown role wizard" in e.value.body["message"]


def test_chat_without_a_template_is_400(tmp_path: Path) -> None:
    folder = prepare_folder(tmp_path, chat_template=None)
    with BackgroundServer(ServeConfig(str(folder))) as s:
        cli = openai.OpenAI(base_url=s.url + "/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            cli.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}])
        assert "no chat template" in e.value.body["message"]
        assert cli.completions.create(model=BASE, prompt="the", max_tokens=2).choices  # completions still work


# ------------------------------------------------------------------------------------------------ errors


def _error(r: Any, status: int) -> Dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "a", "prompt": "the", "n": 2}, "n"),
        ({"model": "a", "prompt": "the", "temperature": 5}, "temperature"),
        ({"model": "a", "prompt": "the", "top_p": 0}, "top_p"),
        ({"model": "a", "prompt": "the", "max_tokens": 0}, "max_tokens"),
        ({"model": "a", "prompt": "the", "max_tokens": -3}, "max_tokens"),
        ({"model": "a", "prompt": "the", "max_tokens": 10**12}, "max_tokens"),
        ({"model": "a", "prompt": "the", "max_tokens": 64}, "max_tokens"),
        ({"model": "a", "prompt": " ".join(["the"] * 70)}, "prompt"),
        ({"model": "a", "prompt": [1, 2, 96]}, "prompt"),
        ({"model": "a", "prompt": [1, -1]}, "prompt"),
        ({"model": "a", "prompt": []}, "prompt"),
        ({"model": "a", "prompt": ["the", "a"]}, "prompt"),
        ({"model": "a", "prompt": {"x": 1}}, "prompt"),
        ({"model": "a"}, "prompt"),
        ({"prompt": "the"}, "model"),
        ({"model": "a", "prompt": "the", "logprobs": 2}, "logprobs"),
        ({"model": "a", "prompt": "the", "echo": True}, "echo"),
        ({"model": "a", "prompt": "the", "best_of": 3}, "best_of"),
        ({"model": "a", "prompt": "the", "frequency_penalty": 0.5}, "frequency_penalty"),
        ({"model": "a", "prompt": "the", "seed": -1}, "seed"),
        ({"model": "a", "prompt": "the", "stop": ["x"] * 17}, "stop"),
        ({"model": "a", "prompt": "the", "adpters": []}, "adpters"),
        ({"model": "a", "prompt": "the", "adapters": [{"name": "a"}, {"name": "a"}]}, "adapters"),
        ({"model": "a", "prompt": "the", "adapters": [{"weight": 1}]}, "adapters"),
        ({"model": "a", "prompt": "the", "stream": "yes"}, "stream"),
    ],
)
def test_bad_completion_bodies_are_400(server: BackgroundServer, body: Dict[str, Any], param: str) -> None:
    with _raw(server) as http:
        err = _error(http.post("/v1/completions", json=body), 400)
        assert err["type"] == "invalid_request_error"
        assert err["param"] == param, err
        # the server is still serving
        assert http.post("/v1/completions", json={"model": "a", "prompt": "the", "max_tokens": 1}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"model": "a", "messages": []},
        {"model": "a", "messages": [{"content": "x"}]},
        {"model": "a", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
        {"model": "a", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
        {"model": "a", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
        {"model": "a", "messages": [{"role": "user", "content": "x"}], "n": 3},
        {"model": "a", "messages": "hello"},
    ],
)
def test_bad_chat_bodies_are_400(server: BackgroundServer, body: Dict[str, Any]) -> None:
    with _raw(server) as http:
        _error(http.post("/v1/chat/completions", json=body), 400)


def test_unknown_model_is_404(client: Any, server: BackgroundServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="the", max_tokens=2)
    with _raw(server) as http:
        err = _error(http.post("/v1/completions", json={"model": "nope", "prompt": "the"}), 404)
        assert err["code"] == "model_not_found" and err["param"] == "model"
        err = _error(
            http.post("/v1/completions", json={"model": "a", "prompt": "the", "adapters": [{"name": "z"}]}), 404
        )
        assert err["param"] == "adapters"
        _error(http.get("/v1/nothing"), 404)
        _error(http.get("/v1/completions"), 405)


def test_malformed_json_is_400(server: BackgroundServer) -> None:
    with _raw(server) as http:
        for raw in (b"{not json", b"", b"[1, 2]", b"\xff\xfe", b"null"):
            _error(http.post("/v1/completions", content=raw, headers={"content-type": "application/json"}), 400)


def test_body_over_the_limit_is_413(server: BackgroundServer) -> None:
    big = {"model": "a", "prompt": "the " * 20000}
    with _raw(server) as http:
        _error(http.post("/v1/completions", json=big), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts the bytes received
            data = json.dumps(big).encode()
            for i in range(0, len(data), 8192):
                yield data[i : i + 8192]

        _error(http.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"}), 413)
        assert http.get("/health").status_code == 200


def test_api_key(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        assert http.get("/health").status_code == 200  # open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}):
            for method, path in (
                ("GET", "/v1/models"),
                ("POST", "/v1/completions"),
                ("GET", "/metrics"),
                ("POST", "/v1/load_lora_adapter"),
                ("GET", "/v1/nothing"),
            ):
                err = _error(http.request(method, path, headers=headers, json={}), 401)
                assert err["type"] == "authentication_error"
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", timeout=TIMEOUT, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_loading_is_off_by_default(server: BackgroundServer) -> None:
    with _raw(server) as http:
        _error(http.post("/v1/load_lora_adapter", json={"lora_name": "c", "lora_path": ADAPTER["a"]}), 404)
        _error(http.post("/v1/unload_lora_adapter", json={"lora_name": "a"}), 404)


# ------------------------------------------------------------------------------------------------ metrics


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, lab = key.partition("{")
        if metric != name:
            continue
        got = ",".join(sorted(lab.rstrip("}").split(","))) if lab else ""
        if not labels or got == want:
            total += float(value)
    return total


def test_metrics_count_requests_and_tokens(folder: Path, ref: Reference) -> None:
    with BackgroundServer(ServeConfig(str(folder), adapters=dict(ADAPTER))) as s:
        cli = openai.OpenAI(base_url=s.url + "/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
        generated = {"a": 0, "b": 0}
        prompt_tokens = 0
        for i in range(3):
            for model in ("a", "b"):
                out = cli.completions.create(model=model, prompt=PROMPTS[i], max_tokens=NEW, temperature=0)
                generated[model] += out.usage.completion_tokens
                prompt_tokens += out.usage.prompt_tokens
        with pytest.raises(openai.NotFoundError):
            cli.completions.create(model="nope", prompt="the", max_tokens=2)
        text = httpx.get(s.url + "/metrics", timeout=TIMEOUT).text
    assert _metric(text, "multilora_requests_total", adapter="a", status="200") == 3
    assert _metric(text, "multilora_requests_total", adapter="b", status="200") == 3
    assert _metric(text, "multilora_requests_total", adapter="unknown", status="404") == 1
    assert _metric(text, "multilora_generated_tokens_total", adapter="a") == generated["a"]
    assert _metric(text, "multilora_generated_tokens_total", adapter="b") == generated["b"]
    assert _metric(text, "multilora_prompt_tokens_total") == prompt_tokens
    assert _metric(text, "multilora_time_to_first_token_seconds_count") == 6
    assert _metric(text, "multilora_inter_token_latency_seconds_count") == sum(generated.values()) - 6
    assert _metric(text, "multilora_queue_depth") == 0
    assert _metric(text, "multilora_running_rows") == 0
    assert _metric(text, "multilora_slot_table_slots") > 0
    assert "multilora_slot_table_residents" in text
    if hasattr(ml.Model, "batch_slot_stats"):  # the slot table's counters (a set per row and step: at least one each)
        lookups = _metric(text, "multilora_slot_table_hits_total") + _metric(text, "multilora_slot_table_misses_total")
        assert lookups >= 6 and "multilora_slot_table_evictions_total" in text


# ------------------------------------------------------------------------------------------------ adapter loading


@pytest.fixture
def loading_server(folder: Path, tmp_path: Path) -> Iterator[Any]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    shutil.copy(ADAPTER["a"], root / "sub" / "copy_of_a.onnx_adapter")
    (root / "garbage.onnx_adapter").write_bytes(b"\0" * 64)
    outside = tmp_path / "outside.onnx_adapter"
    shutil.copy(ADAPTER["b"], outside)
    os.symlink(outside, root / "link.onnx_adapter")
    config = ServeConfig(str(folder), adapters={"a": ADAPTER["a"]}, adapter_root=str(root), allow_adapter_loading=True)
    with BackgroundServer(config) as s:
        yield s, root, outside


def test_load_and_unload_adapters(loading_server: Any, ref: Reference) -> None:
    s, root, outside = loading_server
    with httpx.Client(base_url=s.url, timeout=TIMEOUT) as http:
        r = http.post("/v1/load_lora_adapter", json={"lora_name": "c", "lora_path": "sub/copy_of_a.onnx_adapter"})
        assert r.status_code == 200, r.text
        ids = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
        assert ids["c"]["parent"] == BASE
        body = {"model": "c", "prompt": PROMPTS[1], "max_tokens": NEW, "temperature": 0, "return_token_ids": True}
        out = http.post("/v1/completions", json=body).json()
        assert out["choices"][0]["token_ids"] == ref.tokens(PROMPT_IDS[1], ["a"], NEW)
        # loaded twice, or under the base model's name
        _error(
            http.post("/v1/load_lora_adapter", json={"lora_name": "c", "lora_path": "sub/copy_of_a.onnx_adapter"}), 400
        )
        _error(
            http.post("/v1/load_lora_adapter", json={"lora_name": BASE, "lora_path": "sub/copy_of_a.onnx_adapter"}), 400
        )
        # outside the root: climbing out, an absolute path, a symlink that leads out
        for path in (
            "../outside.onnx_adapter",
            str(outside),
            "link.onnx_adapter",
            "sub/../../outside.onnx_adapter",
            str(root),
            "/etc/passwd",
        ):
            err = _error(http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": path}), 400)
            assert "outside the adapter root" in err["message"]
        _error(http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "missing.onnx_adapter"}), 404)
        err = _error(
            http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "garbage.onnx_adapter"}), 400
        )
        assert "cannot load" in err["message"]
        _error(http.post("/v1/load_lora_adapter", json={"lora_name": "x"}), 400)
        assert "x" not in {m["id"] for m in http.get("/v1/models").json()["data"]}
        # unload: the name is gone, the others stay
        assert http.post("/v1/unload_lora_adapter", json={"lora_name": "c"}).status_code == 200
        _error(http.post("/v1/completions", json=body), 404)
        _error(http.post("/v1/unload_lora_adapter", json={"lora_name": "c"}), 404)
        assert {m["id"] for m in http.get("/v1/models").json()["data"]} == {BASE, "a"}


# ------------------------------------------------------------------------------------------------ the command


@pytest.mark.parametrize("plain", [False, True], ids=["prepared", "plain-folder"])
def test_multilora_serve_command(folder: Path, ref: Reference, plain: bool, tmp_path: Path) -> None:
    """The command serves a prepared folder, and a plain one (the engine prepares a copy into the cache)."""
    from serve_support import LORA

    port = free_port()
    env = dict(os.environ, MULTILORA_API_KEY=KEY, MULTILORA_CACHE_DIR=str(tmp_path))
    if plain:
        folder = LORA
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multilora.cli",
            "serve",
            str(folder),
            "--adapter",
            f"a={ADAPTER['a']}",
            "--port",
            str(port),
            "--max-batch-size",
            "4",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with openai.OpenAI(base_url=url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0) as cli:
            out = cli.completions.create(
                model="a", prompt=PROMPTS[0], max_tokens=NEW, temperature=0, extra_body={"return_token_ids": True}
            )
        assert out.choices[0].model_dump()["token_ids"] == ref.tokens(PROMPT_IDS[0], ["a"], NEW)
        assert httpx.get(url + "/v1/models", timeout=TIMEOUT).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (0, -15)


def test_serve_command_refuses_loading_without_a_root(folder: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "multilora.cli", "serve", str(folder), "--allow-adapter-loading"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--adapter-root" in r.stderr


# ------------------------------------------------------------------------------------------------ disconnect, busy


class GatedEngine:
    """The real engine behind a gate the test opens token by token (so a client can leave mid-generation whatever
    the model's speed), recording every cancel(); ``busy`` makes submit raise the engine's BusyError."""

    def __init__(self, model: Any, **kwargs: Any) -> None:
        self.inner = ml.Engine(model, **kwargs)
        self.requests: List[Any] = []
        self.busy = False

    def submit(self, params: Any, ids: Any) -> Any:
        if self.busy:
            raise ml.BusyError("the request queue is full (test)")
        req = _GatedRequest(self.inner.submit(params, ids))
        self.requests.append(req)
        return req

    def close(self) -> None:
        for r in self.requests:
            r.gate.release(1000)
        self.inner.close()


class _GatedRequest:
    def __init__(self, inner: Any) -> None:
        import threading

        self.inner = inner
        self.gate = threading.Semaphore(0)
        self.cancelled = threading.Event()
        self.delivered = False  # the engine may be long finished; the server has not seen every token yet

    async def stream(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        async for token in self.inner.stream():
            await loop.run_in_executor(None, self.gate.acquire, True, TIMEOUT)
            yield token
        self.delivered = True

    def cancel(self) -> None:
        self.cancelled.set()
        self.inner.cancel()

    def is_done(self) -> bool:
        return self.delivered and bool(self.inner.is_done())

    @property
    def finish_reason(self) -> Any:
        return self.inner.finish_reason

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def gated(folder: Path) -> Iterator[Any]:
    engines: List[GatedEngine] = []

    def factory(model: Any, **kwargs: Any) -> GatedEngine:
        engines.append(GatedEngine(model, **kwargs))
        return engines[-1]

    with BackgroundServer(ServeConfig(str(folder), adapters=dict(ADAPTER)), engine_factory=factory) as s:
        yield s, engines[0]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_cancels_its_request(gated: Any, stream: bool) -> None:
    server, engine = gated
    body = {"model": "a", "prompt": PROMPTS[0], "max_tokens": 40, "temperature": 0, "stream": stream}
    data = json.dumps(body).encode()
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        # a raw connection: the client sends the request, reads what it wants, and closes the socket
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            deadline = time.monotonic() + TIMEOUT
            while not engine.requests:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            req = engine.requests[0]
            if stream:
                req.gate.release(3)
                received = b""
                while received.count(b"data: {") < 2:  # the first chunks arrive while the generation goes on
                    part = sock.recv(65536)
                    assert part, "the server closed the stream"
                    received += part
        # the connection is closed here, the generation is not finished (the gate holds it)
        assert req.cancelled.wait(TIMEOUT), "the request was not cancelled when its client left"
        req.gate.release(1000)
        deadline = time.monotonic() + TIMEOUT
        while True:  # bounded: the server records the request as 499 once its generator has closed
            text = http.get("/metrics").text
            if _metric(text, "multilora_requests_total", adapter="a", status="499") == 1:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert _metric(text, "multilora_running_rows") + _metric(text, "multilora_queue_depth") == 0
        # the server goes on serving
        engine.requests.clear()
        ok = {"model": "b", "prompt": PROMPTS[1], "max_tokens": 2, "temperature": 0}
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(http.post, "/v1/completions", json=ok)
            deadline = time.monotonic() + TIMEOUT
            while not engine.requests:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            engine.requests[0].gate.release(1000)
            assert fut.result().status_code == 200


@pytest.mark.skipif(not hasattr(ml, "BusyError"), reason="needs ml.BusyError")
def test_a_full_queue_is_429_and_a_closed_engine_503(gated: Any) -> None:
    server, engine = gated
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        engine.busy = True
        err = _error(http.post("/v1/completions", json={"model": "a", "prompt": "the", "max_tokens": 2}), 429)
        assert err["type"] == "rate_limit_error"
        engine.busy = False
        engine.inner.close()  # the real engine refuses with ClosedError
        err = _error(http.post("/v1/completions", json={"model": "a", "prompt": "the", "max_tokens": 2}), 503)
        assert http.get("/v1/models").status_code == 200


def test_the_real_engine_queue_full_is_429(folder: Path) -> None:
    """An engine that admits nothing by itself (no worker) and lets no request wait (max_queue 0) refuses every
    submit with BusyError: each request is a 429, and the server stays up."""

    def factory(model: Any, **kwargs: Any) -> Any:
        return ml.Engine(model, max_batch_size=1, max_queue=0, worker=False)

    with BackgroundServer(ServeConfig(str(folder), adapters=dict(ADAPTER)), engine_factory=factory) as s:
        with httpx.Client(base_url=s.url, timeout=TIMEOUT) as http:
            for stream in (False, True):
                body = {"model": "a", "prompt": "the", "max_tokens": 2, "stream": stream}
                err = _error(http.post("/v1/completions", json=body), 429)
                assert err["code"] == "server_busy" and "retry" in err["message"]
            assert http.get("/v1/models").status_code == 200
            text = http.get("/metrics").text
    assert _metric(text, "multilora_requests_total", adapter="a", status="429") == 2
