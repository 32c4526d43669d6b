"""Dynamic batching: requests' features wait briefly in one bounded queue and run together.

Every request turns into features (one model row each) that join a single queue. One asyncio task, the batcher,
takes the oldest waiting feature and waits until either ``max_wait_s`` has passed since it arrived or enough work
is queued to fill a batch (``max_batch_tokens`` padded tokens or ``max_batch_size`` rows). It then plans batches
over the waiting features of the same pipeline with the library's length bucketing (sorted by length, padded to
multiples of 16 under the token budget) and runs the batch that holds the oldest feature, so nobody starves and
short texts are not padded to a long one's length. Inference runs in one worker thread, off the event loop: the
loop keeps accepting, validating and refusing requests while the model works, and exactly one model call uses the
cores at a time (torch's own intra-op threads parallelise it).

The queue is bounded (``max_queue`` features): ``submit`` refuses at once with :class:`QueueFull` instead of
letting latency grow without limit. ``close`` stops new work and finishes everything already accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..infer.batching import bucket_length, plan_batches
from ..pipelines import BUCKET, Feature, Pipeline
from .metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue cannot take this request's features now; the client should retry later."""


class ShuttingDown(Exception):
    """The server is draining for shutdown and accepts no new work."""


@dataclass
class Job:
    pipeline: Pipeline
    feature: Feature
    future: asyncio.Future
    arrived: float


class Batcher:
    def __init__(self, max_batch_tokens: int = 4096, max_batch_size: int = 64, max_wait_s: float = 0.005,
                 max_queue: int = 256, metrics: Metrics | None = None):
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and max_wait_s >= 0")
        self.max_batch_tokens, self.max_batch_size = max_batch_tokens, max_batch_size
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self.metrics = metrics
        self._pending: list[Job] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        # one thread: model calls never overlap, so torch's intra-op threads own the cores
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezebert-infer")

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="squeezebert-batcher")

    async def close(self) -> None:
        """Refuse new work, finish every accepted feature, stop the worker thread."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def depth(self) -> int:
        return sum(not job.future.done() for job in self._pending)

    # ---- intake -------------------------------------------------------------------------------------------------
    def submit(self, pipeline: Pipeline, features: Sequence[Feature]) -> list[asyncio.Future]:
        """Queue a request's features (all or none); futures resolve to each feature's output."""
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        if self.depth + len(features) > self.max_queue:
            raise QueueFull(f"queue full ({self.depth} of {self.max_queue} rows waiting)")
        loop, now = asyncio.get_running_loop(), time.monotonic()
        jobs = [Job(pipeline, f, loop.create_future(), now) for f in features]
        self._pending.extend(jobs)
        self._gauge()
        self._wake.set()
        return [job.future for job in jobs]

    # ---- the batcher task ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [job for job in self._pending if not job.future.done()]  # drop timed-out requests
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._wait_for_batch(self._pending[0])
            batch = self._take_batch()
            if batch:
                await self._execute(loop, batch)

    async def _wait_for_batch(self, oldest: Job) -> None:
        """Until the oldest job's wait is over or a full batch of its pipeline is queued."""
        while not self._closing:
            remaining = oldest.arrived + self.max_wait_s - time.monotonic()
            same = [job for job in self._pending if job.pipeline is oldest.pipeline and not job.future.done()]
            tokens = sum(bucket_length(len(job.feature), BUCKET, oldest.pipeline.pad_cap) for job in same)
            if remaining <= 0 or tokens >= self.max_batch_tokens or len(same) >= self.max_batch_size:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[Job]:
        """The length-bucketed batch that holds the oldest live job, removed from the queue."""
        live = [job for job in self._pending if not job.future.done()]
        if not live:
            return []
        pipeline = live[0].pipeline
        group = [job for job in live if job.pipeline is pipeline]
        budget = max(self.max_batch_tokens, pipeline.pad_cap)  # one row of the longest length always fits
        plan = plan_batches([len(job.feature) for job in group], budget, self.max_batch_size, BUCKET,
                            pipeline.pad_cap)
        chosen = next(batch for batch in plan if 0 in batch)  # group[0] is the oldest
        taken = {id(group[i]) for i in chosen}
        self._pending = [job for job in self._pending if id(job) not in taken]
        self._gauge()
        return [group[i] for i in sorted(chosen)]

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[Job]) -> None:
        pipeline = batch[0].pipeline
        features = [job.feature for job in batch]
        start = time.perf_counter()
        try:
            outputs: list[Any] = await loop.run_in_executor(self._executor, pipeline.run_batch, features)
        except Exception as error:  # a failed model call fails its requests, never the batcher
            log.exception("inference failed for a batch of %d rows", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        if self.metrics is not None:
            width = bucket_length(max(len(f) for f in features), BUCKET, pipeline.pad_cap)
            self.metrics.observe_batch(len(batch), width * len(batch), time.perf_counter() - start)
        for job, out in zip(batch, outputs):
            if not job.future.done():  # its request may have timed out meanwhile
                job.future.set_result(out)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)
