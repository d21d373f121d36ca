"""Running the app with uvicorn: in the foreground (``multilora serve``) or in a background thread (tests, benchmarks).

from multilora.serve import ServeConfig, BackgroundServer
with BackgroundServer(ServeConfig("model_dir", adapters={"sql": "sql.onnx_adapter"})) as server:
    print(server.url)      # http://127.0.0.1:<free port>
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional

from .app import LocalBackend, create_app
from .host import ModelHost, ServeConfig

__all__ = ["build_app", "run", "BackgroundServer", "free_port"]


def build_app(config: ServeConfig, engine_factory: Any = None) -> Any:
    """(asgi_app, host): the model, adapters and engine loaded and the app over them."""
    host = ModelHost(config, engine_factory=engine_factory)
    app = create_app(LocalBackend(host), api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    return app, host


def _uvicorn_config(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    # h11 and asyncio: pure-Python, nothing else to install; one worker process (the engine is the parallelism)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http="h11",
        loop="asyncio",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serves until interrupted (SIGINT/SIGTERM), then closes the engine (requests in flight are cancelled)."""
    import uvicorn

    app, model_host = build_app(config)
    try:
        uvicorn.Server(_uvicorn_config(app, host, port, log_level)).run()
    finally:
        model_host.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """The server in a thread of this process, on 127.0.0.1 and a free port; ``stop()`` (or leaving the ``with``)
    shuts uvicorn down and closes the engine."""

    def __init__(
        self,
        config: ServeConfig,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        log_level: str = "warning",
        startup_timeout: float = 30.0,
        engine_factory: Any = None,
    ) -> None:
        import uvicorn

        self.app, self.host = build_app(config, engine_factory=engine_factory)
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(_uvicorn_config(self.app, host, self.port, log_level))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread = threading.Thread(target=self._server.run, name="multilora-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.host.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
