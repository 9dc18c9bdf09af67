"""A TCP proxy that delays every byte by a fixed time, both ways: latency without netem.

Each direction of each connection is a pipe: a reader stamps every chunk with the time it
may leave, a writer sends chunks in order once their time has come. So the delay is added
once per trip, as on a long link, not once per chunk in series.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress


class DelayProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target`` after ``delay_s``."""

    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.connections = 0
        self.chunks = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> "DelayProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            node_r, node_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(self._pipe(client_r, node_w), self._pipe(node_r, client_w))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a connection ends, or the proxy stops: either way this connection is over
        finally:
            for writer in (client_w, node_w):
                writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward ``reader`` to ``writer``, each chunk ``delay_s`` after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    with suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
                self.chunks += 1

        sender = asyncio.create_task(send())
        try:
            while True:
                chunk = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + self.delay_s, chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()
