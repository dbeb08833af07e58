"""Transient vs permanent I/O errors: retry the first with backoff (tenacity), never the second.

A source that cannot be decoded, or is missing, is a fact about the data: a failed manifest row.
An `OSError` such as a reset connection, a timeout or an S3 hiccup says nothing about the image:
it is retried, and if it outlives the retries it fails the shard (redone on rerun), never the source.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any, Callable, TypeVar

import tenacity

T = TypeVar("T")

#: Errors that retrying cannot fix: the file is not there, not a file, not ours, or the disk is full/read-only.
PERMANENT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EDQUOT,
                              errno.ENAMETOOLONG, errno.ELOOP})


@dataclasses.dataclass
class RetryPolicy:
    """How often and how patiently transient I/O errors are retried."""

    attempts: int = 5  # tries in all, the first included
    initial: float = 0.2  # seconds before the first retry; doubles each time, with jitter
    maximum: float = 10.0  # longest single wait


#: The policy in force (tests and services may replace its fields).
POLICY = RetryPolicy()


class ShardIOError(RuntimeError):
    """An I/O error that outlived its retries: the shard fails (and is redone on rerun), no source is blamed."""


def is_transient(exc: BaseException) -> bool:
    """True for an OSError that a retry may cure (not missing, not permission, not a full or read-only disk)."""
    if not isinstance(exc, OSError) or isinstance(exc, PERMANENT_ERRORS):
        return False
    return exc.errno not in PERMANENT_ERRNOS


def with_retries(fn: Callable[..., T], *args: Any, what: str, policy: RetryPolicy | None = None) -> T:
    """Call fn(*args), retrying transient OSErrors with exponential backoff.

    Raises ShardIOError (not an OSError, so no caller mistakes it for a bad file) once the
    attempts are used up; permanent errors are raised at once, unchanged.
    """
    policy = policy or POLICY
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential_jitter(multiplier=policy.initial, max=policy.maximum, jitter=policy.initial),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
    )
    try:
        return retrying(fn, *args)
    except OSError as exc:
        if not is_transient(exc):
            raise
        raise ShardIOError(f"{what}: {exc} (still failing after {policy.attempts} attempts)") from exc
