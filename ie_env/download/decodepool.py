"""Decoding off the event loop: worker processes driven directly by the loop, and adaptive batching.

``concurrent.futures.ProcessPoolExecutor`` runs two helper threads in the parent; on a busy
2-core machine they fight the event loop for the GIL and cost more than a millisecond per image,
and its workers outlive a parent killed with SIGKILL. Here each worker owns one end of a
socketpair: the event loop writes length-prefixed pickled batches with ``sock_sendall`` and reads
results with ``sock_recv_into``; a worker exits as soon as its socket reaches EOF, i.e. when the
parent closes it or dies. A worker that crashes fails only its own in-flight batches (as
``decode_error`` values) and is replaced on the next batch.

:class:`BatchDecoder` is what the downloader talks to: it batches bodies for the pool (or a thread
when ``workers`` is 0) and holds back fetching while ``max_pending_bytes`` of bodies wait.

Programs that use it need the usual ``if __name__ == "__main__":`` guard (forkserver/spawn).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import pickle
import signal
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ie_env.download.decode import Decoded, DecodeSpec, decode_batch

_HEADER = struct.Struct("<Q")


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _worker_main(sock: socket.socket, spec: DecodeSpec) -> None:
    """Worker loop: read a batch, decode it, send the results; exit at EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    sock.setblocking(True)
    while True:
        header = _recv_exact(sock, _HEADER.size)
        if header is None:
            return
        payload = _recv_exact(sock, _HEADER.unpack(header)[0])
        if payload is None:
            return
        results = decode_batch(pickle.loads(payload), spec)
        out = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            sock.sendall(_HEADER.pack(len(out)) + out)
        except OSError:
            return


@dataclass
class _Worker:
    process: Any
    sock: socket.socket
    pending: deque[asyncio.Future[list[Decoded] | str]] = field(default_factory=deque)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: asyncio.Task[None] | None = None
    alive: bool = True


class DecodePool:
    """``workers`` decode processes for one event loop.

    Args:
        workers: number of processes (>= 1).
        spec: how to decode; fixed for the pool's life.
    """

    def __init__(self, workers: int, spec: DecodeSpec) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.spec = spec
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self._ctx = multiprocessing.get_context(method)
        self._workers: list[_Worker | None] = [None] * workers
        self._closed = False

    @property
    def size(self) -> int:
        """Number of worker slots."""
        return len(self._workers)

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if w is not None and w.alive]

    def _start(self, slot: int) -> _Worker:
        parent, child = socket.socketpair()
        process = self._ctx.Process(
            target=_worker_main, args=(child, self.spec), name=f"ie-env-decode-{slot}", daemon=True
        )
        process.start()
        child.close()
        parent.setblocking(False)
        worker = _Worker(process, parent)
        worker.reader = asyncio.get_running_loop().create_task(self._read(worker))
        self._workers[slot] = worker
        return worker

    def _pick(self) -> _Worker:
        best: _Worker | None = None
        for slot, worker in enumerate(self._workers):
            if worker is None or not worker.alive:
                if worker is not None:
                    self._reap(worker)
                worker = self._start(slot)
            if best is None or len(worker.pending) < len(best.pending):
                best = worker
        assert best is not None
        return best

    async def decode(self, items: list[bytes]) -> list[Decoded]:
        """Decode ``items`` in one worker; failures come back as ``decode_error`` values."""
        if self._closed:
            raise RuntimeError("DecodePool is closed")
        loop = asyncio.get_running_loop()
        worker = self._pick()
        future: asyncio.Future[list[Decoded] | str] = loop.create_future()
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        async with worker.send_lock:
            worker.pending.append(future)
            try:
                await loop.sock_sendall(worker.sock, _HEADER.pack(len(payload)) + payload)
            except OSError as exc:
                worker.alive = False
                self._fail(worker, f"decode worker unreachable: {exc}")
        result = await future
        if isinstance(result, str):  # the worker died: every item of the batch failed
            return [Decoded("decode_error", result) for _ in items]
        return result

    async def _read(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        reason = "decode worker exited"
        try:
            while True:
                header = await self._recv(loop, worker.sock, _HEADER.size)
                if header is None:
                    break
                payload = await self._recv(loop, worker.sock, _HEADER.unpack(header)[0])
                if payload is None:
                    break
                results = pickle.loads(payload)
                if worker.pending:
                    future = worker.pending.popleft()
                    if not future.done():
                        future.set_result(results)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            reason = f"decode worker failed: {exc}"
        finally:
            worker.alive = False
            self._fail(worker, reason)

    @staticmethod
    async def _recv(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = await loop.sock_recv_into(sock, view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    @staticmethod
    def _fail(worker: _Worker, reason: str) -> None:
        while worker.pending:
            future = worker.pending.popleft()
            if not future.done():
                future.set_result(reason)

    def _reap(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.sock.close()
        if worker.reader is not None:
            worker.reader.cancel()
        worker.process.join(timeout=1)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=1)

    async def aclose(self) -> None:
        """Stop the workers (they see EOF and exit)."""
        self._closed = True
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * len(self._workers)
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.sock.close()
            if worker.reader is not None:
                worker.reader.cancel()
        loop = asyncio.get_running_loop()
        for worker in workers:
            await loop.run_in_executor(None, worker.process.join, 5)
            if worker.process.is_alive():
                worker.process.kill()
                await loop.run_in_executor(None, worker.process.join, 5)


class BatchDecoder:
    """Sends bodies to the decode workers in adaptive batches, with a byte budget for back-pressure.

    While fewer than two batches per worker are in flight, a body is sent at once; when the
    workers are busy, bodies accumulate into batches of up to ``batch_size``.

    Args:
        spec: how to decode.
        workers: decode processes; 0 decodes in one thread of this process.
        batch_size: most bodies sent to a worker at once.
        max_pending_bytes: bytes of bodies that may wait for a decode before :meth:`reserve` blocks.
    """

    def __init__(self, spec: DecodeSpec, workers: int, batch_size: int, max_pending_bytes: int) -> None:
        self._spec = spec
        self._batch_size = batch_size
        self._budget = max_pending_bytes
        self.pool: DecodePool | None = DecodePool(workers, self._spec) if workers > 0 else None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        if self.pool is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ie-env-decode")
        self._max_inflight = 2 * max(1, workers)
        self._inflight = 0
        self._pending_bytes = 0
        self._pending_items = 0
        self._buf: list[tuple[bytes, asyncio.Future[Decoded]]] = []
        self._cond = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more may wait for decoding (always admits one body)."""
        async with self._cond:
            await self._cond.wait_for(
                lambda: self._pending_items == 0 or self._pending_bytes + nbytes <= self._budget
            )
            self._pending_bytes += nbytes
            self._pending_items += 1

    async def release(self, nbytes: int) -> None:
        """Give back what :meth:`reserve` took, once the body is decoded."""
        async with self._cond:
            self._pending_bytes -= nbytes
            self._pending_items -= 1
            self._cond.notify_all()

    async def decode(self, data: bytes) -> Decoded:
        """Decode one body (batched with others when the workers are busy)."""
        future: asyncio.Future[Decoded] = asyncio.get_running_loop().create_future()
        self._buf.append((data, future))
        self._flush()
        return await future

    def _flush(self) -> None:
        while self._buf and self._inflight < self._max_inflight:
            batch, self._buf = self._buf[: self._batch_size], self._buf[self._batch_size :]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[bytes, asyncio.Future[Decoded]]]) -> None:
        items = [data for data, _ in batch]
        try:
            if self.pool is not None:
                results = await self.pool.decode(items)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._thread, decode_batch, items, self._spec)
        except Exception as exc:
            results = [Decoded("decode_error", f"decoder failed: {type(exc).__name__}: {exc}")] * len(items)
        finally:
            self._inflight -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._flush()

    async def aclose(self) -> None:
        """Cancel pending batches and stop the workers."""
        for task in list(self._tasks):
            task.cancel()
        if self.pool is not None:
            await self.pool.aclose()
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
