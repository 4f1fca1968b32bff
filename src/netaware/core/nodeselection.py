"""Which nodes a pod may run on by its own spec: `nodeSelector` and required node affinity, with Kubernetes'
semantics (the scheduler's NodeAffinity filter), on node labels and names.

- `nodeSelector`: every key must have exactly the value.
- `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`: the terms are ORed; within a term every
  `matchExpressions` and `matchFields` requirement must hold (ANDed); a term without requirements matches nothing.
  Operators: In, NotIn, Exists, DoesNotExist, Gt, Lt (integers); `matchFields` knows `metadata.name`.
- Both set: both must hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


class NodeSelectionError(ValueError):
    """A selector that Kubernetes would reject: the message names the field."""


def _requirement_holds(requirement: Mapping[str, Any], value: str | None, where: str) -> bool:
    operator = requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    if operator not in OPERATORS:
        raise NodeSelectionError(f"{where}.operator: unknown {operator!r} (known: {', '.join(OPERATORS)})")
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if len(values) != 1:
        raise NodeSelectionError(f"{where}.values: {operator} takes exactly one integer")
    try:
        limit = int(values[0])
    except ValueError:
        raise NodeSelectionError(f"{where}.values: {operator} takes an integer, got {values[0]!r}") from None
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return False
    return number is not None and (number > limit if operator == "Gt" else number < limit)


def _term_holds(term: Mapping[str, Any], name: str, labels: Mapping[str, str], where: str) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    for k, requirement in enumerate(expressions):
        if not _requirement_holds(
            requirement, labels.get(str(requirement.get("key"))), f"{where}.matchExpressions[{k}]"
        ):
            return False
    for k, requirement in enumerate(fields):
        if requirement.get("key") != "metadata.name":
            raise NodeSelectionError(f"{where}.matchFields[{k}].key: only metadata.name is supported")
        if not _requirement_holds(requirement, name, f"{where}.matchFields[{k}]"):
            return False
    return True


def pod_fits_node(pod_spec: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> bool:
    """Whether a pod with this spec may run on the node `name` with `labels`."""
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(str(k)) != str(v) for k, v in selector.items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    terms = required.get("nodeSelectorTerms") or []
    where = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    return any(_term_holds(term, name, labels, f"{where}[{t}]") for t, term in enumerate(terms))
