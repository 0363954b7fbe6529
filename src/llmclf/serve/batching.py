"""Dynamic batching: the bounded queue between the server's requests and the one thread that runs the model.

Requests wait in one bounded queue; a single worker thread runs the model on the texts gathered for up to
`max_wait_ms`. torch releases the GIL during the forward pass, so the event loop keeps accepting and queueing
requests meanwhile, and the next batch is whatever arrived while the model was busy. Tested in-process by
tests/test_serve.py (`python -m pytest -q tests/test_serve.py -k batcher`).
"""

import asyncio
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueFull(Exception):
    """`max_queue` texts are waiting already; the server answers 503 with Retry-After."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


@dataclass
class BatchStats:
    """What the batcher did; /v1/stats shows it, so tests and operators can see batches form."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    rejected: int = 0
    failed_batches: int = 0
    sizes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "texts": self.texts, "batches": self.batches, "rejected": self.rejected,
                "failed_batches": self.failed_batches, "max_batch_size_seen": max(self.sizes, default=0),
                "mean_batch_size": self.texts / self.batches if self.batches else 0.0,
                "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class Batcher:
    """Gathers the texts of concurrent requests into batches for one worker thread.

    `run_batch` maps a list of texts to one result per text (the server passes `Classifier.classify`).
    A batch holds at most `max_batch_size` texts, except a single request larger than that, which runs alone;
    at most `max_queue` texts wait, and `submit` raises QueueFull past it.

    >>> batcher = Batcher(classifier.classify, max_batch_size=32, max_wait_ms=5, max_queue=1024)  # doctest: +SKIP
    >>> batcher.start(); records = await batcher.submit(["Superb!", "Dull."])                     # doctest: +SKIP
    """

    def __init__(self, run_batch, max_batch_size: int, max_wait_ms: float, max_queue: int):
        self.run_batch, self.max_batch_size, self.max_queue = run_batch, max_batch_size, max_queue
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self.busy = 0  # texts in the forward pass now running
        self._pending: deque[_Job] = deque()
        self._queued = 0  # texts in _pending
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmclf-model")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="llmclf-batcher")

    async def stop(self) -> None:
        """Stop taking batches (the server has answered its in-flight requests by now) and join the thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(QueueFull())
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> list:
        if self._queued + len(texts) > self.max_queue:
            self.stats.rejected += 1
            raise QueueFull()
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued += len(job.texts)
        self.stats.requests += 1
        self._arrived.set()
        return await job.future

    async def _next_batch(self) -> list[_Job]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while self._queued < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        jobs, size = [], 0
        while self._pending and (not jobs or size + len(self._pending[0].texts) <= self.max_batch_size):
            job = self._pending.popleft()
            self._queued -= len(job.texts)
            if job.future.done():  # its request was cancelled while it waited
                continue
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            self.busy = len(texts)
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, texts)
            except Exception as exc:  # a bug or a broken model: fail these requests, keep serving
                self.stats.failed_batches += 1
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.busy = 0
            self.stats.batches += 1
            self.stats.texts += len(texts)
            self.stats.sizes[len(texts)] += 1
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)

