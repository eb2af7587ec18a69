"""nginx on loopback serving a folder: the static web server the download benchmark fetches from."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path("/usr/share/openclipart/png")
NGINX = "/usr/sbin/nginx"


def corpus_files(root: Path = CORPUS) -> list[str]:
    """Unique files under ``root`` (symlinks resolved), as paths relative to ``root``."""
    real_root = root.resolve()
    seen: set[str] = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            real = Path(dirpath, name).resolve()
            if real.is_file() and real.is_relative_to(real_root):
                seen.add(str(real.relative_to(real_root)))
    return sorted(seen)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx_server(root: Path) -> Iterator[int]:
    """Run nginx serving ``root`` on a free 127.0.0.1 port; yield the port."""
    if not os.path.exists(NGINX):
        raise SystemExit("nginx is missing: apt-get install nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="ie-nginx-"))
    port = free_port()
    conf = tmp / "nginx.conf"
    temp_paths = "\n".join(
        f"    {name}_temp_path {tmp / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
{temp_paths}
    types {{ image/png png; image/jpeg jpg; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root.resolve()};
        location / {{ }}
    }}
}}
"""
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"nginx did not start: {err}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
