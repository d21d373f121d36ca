"""Scale-out on Ray Serve (``pip install multilora[ray]``): N engine replicas behind the same OpenAI routes.

    multilora serve MODEL_DIR --adapter sql=... --adapter chat=... --ray --replicas 4

Two deployments in one Ray Serve application:

- ``EngineReplica`` (N replicas): each a ModelHost — the model, its own engine and slot table — that starts with no
  adapter loaded. Adapter sets are loaded through Ray Serve's model multiplexing: a request's multiplexed model id is
  its adapter set, ``@serve.multiplexed`` loads the set on first use and keeps the last ``max_adapters_per_replica``
  sets per replica (LRU; an evicted set's adapters are unloaded once no resident set uses them), and Ray's router
  sends a request to a replica that already holds its set when there is one.
- ``Ingress`` (1 replica): the FastAPI app of app.py over a backend that keeps the catalog of adapter names and paths,
  answers /v1/models and the adapter-loading routes itself, and forwards each generation to the replicas with
  ``multiplexed_model_id`` = the adapter set (the base model has none: any replica). Every response carries the
  header ``x-multilora-replica`` naming the replica that generated it; /metrics counts requests by adapter and
  replica (``multilora_ray_routed_total``).

Each replica's engine runs in its own process (a Ray actor); replicas claim no CPU from Ray's scheduler by default,
since the engine's own threads are what uses the cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Any, AsyncIterator, Dict, List, Optional

from ray import serve

from .app import create_app
from .host import (
    ModelHost,
    ServeConfig,
    adapter_names,
    check_loading_allowed,
    resolve_adapter_path,
    unknown_adapter,
)
from .protocol import AdapterRef, APIError, LoadAdapterRequest, UnloadAdapterRequest, error_body

__all__ = ["EngineReplica", "Ingress", "RayBackend", "build_ray_app", "run_ray", "REPLICA_HEADER", "APP_NAME"]

log = logging.getLogger("multilora.serve")

REPLICA_HEADER = "x-multilora-replica"
APP_NAME = "multilora"


def _set_key(names: List[str], paths: Dict[str, str]) -> str:
    """The multiplexed model id of an adapter set: its (name, path) pairs, sorted, as JSON ("" = base model)."""
    return json.dumps(sorted([n, paths[n]] for n in set(names)), separators=(",", ":")) if names else ""


class _ResidentSet:
    """One adapter set held by a replica (what @serve.multiplexed caches); unloads its adapters when evicted."""

    def __init__(self, replica: EngineReplica, pairs: List[List[str]]) -> None:
        self._replica = replica
        self.names = [n for n, _ in pairs]

    def __del__(self) -> None:
        try:
            self._replica._release(self.names)
        except Exception:  # interpreter shutdown
            pass


@serve.deployment(ray_actor_options={"num_cpus": 0})
class EngineReplica:
    """One engine. ``generate`` streams the events of ModelHost.generate, preceded by a ("headers", ...) event."""

    def __init__(self, config: Dict[str, Any], max_adapter_sets: int = 8) -> None:
        cfg = ServeConfig(**dict(config, adapters={}))
        self.host = ModelHost(cfg)
        ctx = serve.get_replica_context()
        rid = getattr(ctx, "replica_id", None)
        self.replica_id = str(getattr(rid, "unique_id", None) or getattr(ctx, "replica_tag", "replica"))
        self._refs: Dict[str, int] = {}
        self._lock = threading.Lock()
        self.set_loads = 0

        async def load_set(key: str) -> _ResidentSet:
            return self._load(key)

        # the LRU size comes from the command line, so the loader is wrapped here rather than decorated
        self._load_set = serve.multiplexed(max_num_models_per_replica=int(max_adapter_sets))(load_set)

    def _release(self, names: List[str]) -> None:
        with self._lock:
            for name in names:
                self._refs[name] -= 1
                if self._refs[name] == 0:
                    del self._refs[name]
                    self.host.remove_adapter(name)

    def _load(self, key: str) -> _ResidentSet:
        pairs = json.loads(key)
        with self._lock:
            for name, path in pairs:
                if self._refs.get(name, 0) == 0 or self.host.adapter_path(name) != path:
                    self.host.add_adapter(name, path, replace=self.host.adapter_path(name) is not None)
                self._refs[name] = self._refs.get(name, 0) + 1
            self.set_loads += 1
        return _ResidentSet(self, pairs)

    async def generate(self, kind: str, body: Any, catalog: Dict[str, str]) -> AsyncIterator[Any]:
        key = serve.get_multiplexed_model_id()
        yield ("headers", {REPLICA_HEADER: self.replica_id})
        if key:
            try:
                resident = await self._load_set(key)
            except APIError as e:
                yield ("error", e.status, e.body())
                return
        else:
            resident = None
        self.host.catalog = catalog
        events = self.host.generate(kind, body)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
            del resident

    async def check_adapter(self, path: str) -> Optional[Dict[str, Any]]:
        """Loads an adapter file into a scratch registry to validate it against the model; the error body or None."""
        import multilora as ml

        try:
            with ml.Adapters(self.host.model) as scratch:
                scratch.load(path, "check")
        except (ml.MultiloraError, OSError, ValueError) as e:
            return error_body(f"cannot load adapter: {e}", "invalid_request_error", "lora_path")
        return None

    async def info(self) -> Dict[str, Any]:
        return {"replica": self.replica_id, "set_loads": self.set_loads, "adapters": sorted(self._refs)}

    def __del__(self) -> None:
        try:
            self.host.close()
        except Exception:
            pass


class RayBackend:
    """The ingress side: catalog, /v1/models, adapter loading, routing by adapter set."""

    def __init__(self, config: ServeConfig, handle: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, generate_latest

        self.config = config
        self.base_name = config.base_name
        self.catalog: Dict[str, str] = dict(config.adapters)
        self.handle = handle
        self._registry = CollectorRegistry()
        self._routed = Counter(
            "multilora_ray_routed",
            "Requests forwarded, by adapter set and the replica that served them",
            ["adapter", "replica"],
            registry=self._registry,
        )
        self._generate_latest = generate_latest

    async def models(self) -> List[Dict[str, Any]]:
        base = {"id": self.base_name, "object": "model", "owned_by": "multilora", "parent": None}
        return [base] + [
            {"id": n, "object": "model", "owned_by": "multilora", "root": p, "parent": self.base_name}
            for n, p in sorted(self.catalog.items())
        ]

    def _route(self, body: Any) -> List[str]:
        """The adapter set of a body (validated names); [] when the body is not even an object (a replica answers
        the 400)."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return []
        refs = body.get("adapters")
        parsed = None
        if isinstance(refs, list):
            try:
                parsed = [AdapterRef.model_validate(r) for r in refs]
            except Exception:
                return []
        names, _ = adapter_names(body["model"], parsed, self.base_name, self.catalog)
        return names

    async def generate(self, kind: str, body: Any) -> AsyncIterator[Any]:
        try:
            names = self._route(body)
        except APIError as e:
            yield ("error", e.status, e.body())
            return
        key = _set_key(names, self.catalog)
        label = body.get("model") if names or not isinstance(body, dict) else self.base_name
        stream = self.handle.options(multiplexed_model_id=key, stream=True).generate.remote(
            kind, body, dict(self.catalog)
        )
        try:
            async for event in stream:
                if event[0] == "headers":
                    self._routed.labels(str(label), event[1].get(REPLICA_HEADER, "?")).inc()
                yield event
        finally:
            stream.cancel()  # no-op when finished; a client that left cancels the replica's request

    async def load_adapter(self, body: Any) -> str:
        check_loading_allowed(self.config)
        req = ModelHost._parse(LoadAdapterRequest, body)
        if req.lora_name == self.base_name or req.lora_name in self.catalog:
            raise APIError(400, f"adapter '{req.lora_name}' is already loaded", param="lora_name")
        real = resolve_adapter_path(self.config.adapter_root, req.lora_path)
        err = await self.handle.check_adapter.remote(real)
        if err is not None:
            raise APIError(400, err["error"]["message"], param="lora_path")
        self.catalog[req.lora_name] = real
        return f"adapter '{req.lora_name}' loaded"

    async def unload_adapter(self, body: Any) -> str:
        check_loading_allowed(self.config)
        req = ModelHost._parse(UnloadAdapterRequest, body)
        if req.lora_name not in self.catalog:
            raise unknown_adapter(req.lora_name, "lora_name")
        del self.catalog[req.lora_name]  # replicas drop it when its sets are evicted; it can no longer be asked for
        return f"adapter '{req.lora_name}' unloaded"

    async def metrics(self) -> bytes:
        return bytes(self._generate_latest(self._registry))

    async def health(self) -> bool:
        return True


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    """The HTTP entry: app.py's routes over a RayBackend holding the handle to the EngineReplica deployment."""

    def __init__(self, engine: Any, config: Dict[str, Any]) -> None:
        self._engine = engine
        self._config = ServeConfig(**config)

    def __serve_build_asgi_app__(self) -> Any:
        cfg = self._config
        return create_app(RayBackend(cfg, self._engine), api_key=cfg.api_key, max_body_bytes=cfg.max_body_bytes)


def build_ray_app(config: ServeConfig, replicas: int = 2, max_adapters_per_replica: int = 8) -> Any:
    """The Ray Serve application (``serve.run(build_ray_app(...), name=APP_NAME)``).

    Ray Serve lets a replica take 5 requests at once by default; an engine replica takes its batch plus as many
    waiting (they queue in the engine, which admits them between steps), and the ingress the sum of the replicas'."""
    config_dict = dataclasses.asdict(config)
    per_replica = 2 * int(config.max_batch_size) + 16
    engine = EngineReplica.options(num_replicas=int(replicas), max_ongoing_requests=per_replica).bind(
        config_dict, int(max_adapters_per_replica)
    )
    return Ingress.options(max_ongoing_requests=per_replica * int(replicas)).bind(engine, config_dict)


def run_ray(
    config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, replicas: int = 2, max_adapters_per_replica: int = 8
) -> None:
    """Starts a local Ray (or joins RAY_ADDRESS), deploys, and serves until interrupted."""
    import signal

    import ray

    ray.init(ignore_reinit_error=True, include_dashboard=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which installs its own handler
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_ray_app(config, replicas, max_adapters_per_replica), name=APP_NAME, route_prefix="/")
        print(f"multilora serve: {replicas} replicas on Ray Serve at http://{host}:{port}", flush=True)
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
        ray.shutdown()
