"""Prometheus metrics for `/metrics`, kept in Redis so API and worker processes share them.

Workers add their observations (job and per-image durations) to small Redis hashes; the API
renders them, with jobs by state and queue depth read live, in the text exposition format.
"""
from __future__ import annotations

from collections.abc import Iterable

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from . import keys, retention

JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf"))
IMAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))


def _key(name: str, labels: dict[str, str]) -> str:
    return f"metrics:{name}:" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def observe(client: redis.Redis, name: str, labels: dict[str, str], value: float, count: int = 1,
            buckets: tuple[float, ...] = IMAGE_BUCKETS) -> None:
    """Add `count` observations of `value` seconds to a histogram (one pipeline, one round trip)."""
    pipe = client.pipeline(transaction=False)
    key = _key(name, labels)
    for le in buckets:
        if value <= le:
            pipe.hincrby(key, f"le:{le}", count)
    pipe.hincrbyfloat(key, "sum", value * count)
    pipe.hincrby(key, "count", count)
    pipe.sadd("metrics:series", key)
    pipe.execute()


def _histograms(client: redis.Redis, name: str, doc: str, buckets: tuple[float, ...]) -> HistogramMetricFamily:
    family: HistogramMetricFamily | None = None
    for raw in sorted(client.smembers("metrics:series")):
        key = keys.text(raw)
        prefix = f"metrics:{name}:"
        if not key.startswith(prefix):
            continue
        labels = dict(pair.split("=", 1) for pair in key[len(prefix):].split(",") if pair)
        if family is None:
            family = HistogramMetricFamily(name, doc, labels=sorted(labels))
        data = {keys.text(k): keys.text(v) for k, v in client.hgetall(key).items()}
        points = [("+Inf" if le == float("inf") else str(le), int(data.get(f"le:{le}", 0))) for le in buckets]
        family.add_metric([labels[k] for k in sorted(labels)], points, float(data.get("sum", 0)))
    return family or HistogramMetricFamily(name, doc, labels=["app"])


class _Collector:
    def __init__(self, client: redis.Redis, counts: dict[str, dict[str, int]], queues: dict[str, dict[str, int]],
                 workers: int):
        self.client, self.counts, self.queues, self.workers = client, counts, queues, workers

    def collect(self) -> Iterable:
        jobs = GaugeMetricFamily("api_jobs", "Jobs kept in the job store, by app and state", labels=["app", "state"])
        for app, by_state in self.counts.items():
            for state, n in by_state.items():
                jobs.add_metric([app, state], n)
        yield jobs
        depth = GaugeMetricFamily("api_queue_messages", "Messages in each queue", labels=["queue", "kind"])
        for queue, sizes in self.queues.items():
            for kind, n in sizes.items():
                depth.add_metric([queue, kind], n)
        yield depth
        yield GaugeMetricFamily("api_live_workers", "Workers with a recent heartbeat", value=self.workers)
        yield _histograms(self.client, "api_job_duration_seconds", "Job durations, start to end", JOB_BUCKETS)
        yield _histograms(self.client, "api_image_duration_seconds", "Processing time per image", IMAGE_BUCKETS)
        yield _histograms(self.client, "api_inference_seconds", "Model time per image, by app and runtime",
                          IMAGE_BUCKETS)
        yield from retention.metric_families(self.client)  # bytes per area, what the sweeper removed


def render(client: redis.Redis, counts: dict[str, dict[str, int]], queues: dict[str, dict[str, int]],
           workers: int) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(client, counts, queues, workers))
    return generate_latest(registry)
