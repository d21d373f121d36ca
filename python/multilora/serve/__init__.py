"""An OpenAI-compatible HTTP server over the request engine (``pip install multilora[serve]``).

    multilora serve MODEL_DIR --adapter sql=sql.onnx_adapter --adapter chat=chat.onnx_adapter

``model`` in a request picks the base model (the folder's name, or --model-name) or an adapter by name; the extra
body field ``"adapters": [{"name": "sql", "weight": 1.0}, ...]`` asks for a weighted mix. Routes: /v1/completions,
/v1/chat/completions (streaming or not), /v1/models, /v1/load_lora_adapter, /v1/unload_lora_adapter, /health,
/metrics. Scale-out over several engines: ``multilora serve --ray --replicas N`` (``multilora[ray]``, ray_serve.py).
"""

from __future__ import annotations

from .app import LocalBackend, create_app
from .host import ModelHost, ServeConfig
from .protocol import APIError
from .server import BackgroundServer, build_app, free_port, run

__all__ = [
    "ServeConfig",
    "ModelHost",
    "LocalBackend",
    "APIError",
    "create_app",
    "build_app",
    "run",
    "BackgroundServer",
    "free_port",
]
