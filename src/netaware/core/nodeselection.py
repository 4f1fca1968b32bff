"""Which nodes a pod may run on by its own spec: `nodeSelector` and required node affinity, with Kubernetes'
semantics (the scheduler's NodeAffinity filter), on node labels and names.

- `nodeSelector`: every key must have exactly the value.
- `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`: the terms are ORed; within a term every
  `matchExpressions` and `matchFields` requirement must hold (ANDed); a term without requirements matches nothing.
  Operators: In, NotIn, Exists, DoesNotExist, Gt, Lt (integers); `matchFields` knows `metadata.name`.
- Both set: both must hold.

Taints are checked apart (`tolerates`), as kube-scheduler's TaintToleration filter does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def narrowed_to_node(pod_spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The pod's `affinity` with its required node affinity narrowed to the node `name`, the way Kubernetes lets a
    gated pod's be changed (KEP-3838): with no required terms, one term `metadata.name In [name]`; otherwise that
    requirement appended to each term's `matchFields`, the existing requirements untouched. A term that names no
    requirement matches no node, and Kubernetes forbids adding to it, so it stays as it is. Everything else in the
    affinity (preferred terms, pod affinity) is kept."""
    requirement = {"key": "metadata.name", "operator": "In", "values": [name]}
    affinity = dict(pod_spec.get("affinity") or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = list(required.get("nodeSelectorTerms") or [])
    if terms:
        terms = [
            {**term, "matchFields": [*(term.get("matchFields") or []), requirement]}
            if term.get("matchExpressions") or term.get("matchFields") else term
            for term in terms
        ]  # fmt: skip
    else:
        terms = [{"matchFields": [requirement]}]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {**required, "nodeSelectorTerms": terms}
    affinity["nodeAffinity"] = node_affinity
    return affinity


def widened_from_node(pod_spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The pod's `affinity` without the requirement `narrowed_to_node(pod_spec, name)` added: what its own spec
    allows, for planning it anew."""
    requirement = {"key": "metadata.name", "operator": "In", "values": [name]}
    affinity = dict(pod_spec.get("affinity") or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = []
    for term in required.get("nodeSelectorTerms") or []:
        fields = [f for f in term.get("matchFields") or [] if f != requirement]
        widened = {k: v for k, v in term.items() if k != "matchFields"}
        if fields:
            widened["matchFields"] = fields
        if widened.get("matchExpressions") or widened.get("matchFields"):
            terms.append(widened)
    if terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {**required, "nodeSelectorTerms": terms}
    else:
        node_affinity.pop("requiredDuringSchedulingIgnoredDuringExecution", None)
    affinity["nodeAffinity"] = node_affinity
    return affinity


SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")
"""Taint effects that keep a pod off a node at scheduling time (PreferNoSchedule only lowers its score)."""


def tolerates(tolerations: Sequence[Mapping[str, Any]], taints: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a pod with `tolerations` may be scheduled on a node with `taints`, as kube-scheduler's TaintToleration
    filter decides: every NoSchedule or NoExecute taint needs a toleration of its effect (or of any effect) whose
    key and value match (operator Equal, the default) or whose key matches or is empty (operator Exists)."""

    def matches(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            return False
        key = toleration.get("key") or ""
        if (toleration.get("operator") or "Equal") == "Exists":
            return not key or key == taint.get("key")
        return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")

    return all(
        any(matches(t, taint) for t in tolerations) for taint in taints if taint.get("effect") in SCHEDULING_EFFECTS
    )
