"""Start the dashboard: who may see it, the read-only database, uvicorn."""

from __future__ import annotations

import logging
import socket

from snapshotter.config import Config
from snapshotter.config.model import is_loopback
from snapshotter.errors import ExitCode, UsageError

log = logging.getLogger("snapshotter.serve")




def check_exposure(config: Config, host: str) -> None:
    """Only loopback without a password: any other address is one line and exit 2."""
    if not is_loopback(host) and not config.serve.password:
        raise UsageError(
            f"serve: refusing to listen on {host} without a password: set serve.password "
            "(via ${VAR}) or serve.password_file, or listen on 127.0.0.1")


def listening_socket(host: str, port: int) -> socket.socket:
    """The bound socket (port 0: a free one), so the address printed is the real one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"serve: cannot listen on {host}:{port}: "
                         f"{exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(config: Config, host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from snapshotter.serve.app import Dashboard, create_app
    from snapshotter.serve.database import open_read_only
    from snapshotter.store import migrate

    host = host or config.serve.host
    port = config.serve.port if port is None else port
    check_exposure(config, host)
    engine = open_read_only(config.database_url)
    try:
        migrate.check_at_head(engine, config.database_url)  # never migrates
        dashboard = Dashboard(config=config, engine=engine)
        app = create_app(dashboard)
        sock = listening_socket(host, port)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"dashboard on http://{shown}:{bound}/ (Ctrl-C stops)", flush=True)
        server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, access_log=False, server_header=False,
            proxy_headers=False, lifespan="off"))
        server.run(sockets=[sock])
    finally:
        engine.dispose()
    return ExitCode.OK
