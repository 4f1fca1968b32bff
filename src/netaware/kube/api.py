"""The one door to the Kubernetes API for every module outside kube/: the official client's API groups and error, and
the rules callers share about errors. An import-linter contract keeps the `kubernetes` package behind this door, so
a change of client version, retry policy or error handling has one place to happen."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http import HTTPStatus

import urllib3.exceptions
from kubernetes.client import (
    AdmissionregistrationV1Api,
    ApiClient,
    AppsV1Api,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    DiscoveryV1Api,
    V1DeleteOptions,
    V1Preconditions,
    VersionApi,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

__all__ = [
    "API_ERRORS",
    "AdmissionregistrationV1Api",
    "ApiClient",
    "ApiException",
    "AppsV1Api",
    "CoordinationV1Api",
    "CoreV1Api",
    "CustomObjectsApi",
    "DiscoveryV1Api",
    "V1DeleteOptions",
    "V1Preconditions",
    "VersionApi",
    "existing_ok",
    "quantity_bytes",
]

API_ERRORS = (ApiException, OSError, urllib3.exceptions.HTTPError)
"""What a call raises when the API server answers with an error or is away: once the client's own retries are spent
it raises urllib3's MaxRetryError, which is not an OSError (a loop that caught only the first two died on the first
API server restart)."""


@contextlib.contextmanager
def existing_ok() -> Iterator[None]:
    """Create-if-absent: an object that is already there (409 Conflict) is kept; every other error is raised."""
    try:
        yield
    except ApiException as error:
        if error.status != HTTPStatus.CONFLICT:
            raise


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G") in bytes, parsed by the client's own rules."""
    return int(parse_quantity(quantity))
