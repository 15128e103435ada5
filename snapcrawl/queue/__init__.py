"""Distributed crawls: a job's volumes in a Redis Stream, taken by workers on any machine through a consumer group."""

from ._job import DEFAULT_KEEP_FINISHED, DEFAULT_MAX_DELIVERIES, JobKeys, JobQueue, JobState, JobStatus, list_jobs
from ._worker import DEFAULT_CLAIM_AFTER, AckingSink, Worker

__all__ = [
    "DEFAULT_CLAIM_AFTER",
    "DEFAULT_KEEP_FINISHED",
    "DEFAULT_MAX_DELIVERIES",
    "AckingSink",
    "JobKeys",
    "JobQueue",
    "JobState",
    "JobStatus",
    "Worker",
    "list_jobs",
]
