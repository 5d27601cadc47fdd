"""moto's S3-compatible server in a thread, standing in for Backblaze B2 in tests."""

from __future__ import annotations

import os
from types import TracebackType

from moto.server import ThreadedMotoServer


class S3Server:
    """moto on 127.0.0.1, on a port the kernel picks when it binds (no race for a free port).

    ``stop()`` then ``start()`` keeps the stored buckets and objects (moto keeps them in this
    process); the server comes back on a new port, so read ``address`` or ``url`` again.
    """

    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def start(self) -> tuple[str, int]:
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._server = server
        self.address = server.get_host_and_port()
        return self.address

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        inner = getattr(self._server, "_server", None)
        if inner is not None:
            inner.server_close()  # ThreadedMotoServer.stop() leaves the listening socket open
        self._server = None

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
