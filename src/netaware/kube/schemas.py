"""Offline validation of netaware resources against the OpenAPI v3 schemas in `crds/`.

The schemas use only keywords that JSON Schema and the apiserver read the same way (type, required, minimum,
maximum, enum, pattern, minItems ...), so an object this module accepts the apiserver accepts too; the cluster
test tier checks that claim against a real kube-apiserver. Errors are reported with the apiserver's field paths
(`spec.links[0].rttMs`) so both tiers can be compared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    field: str
    """Field path in apiserver notation, e.g. spec.links[0].rttMs."""
    reason: str
    """The JSON-schema keyword that failed: required, minimum, maximum, enum, type, pattern, ..."""
    message: str


def field_path(parts: Iterator[Any] | list[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every CRD file in `crd_dir`."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate_resource(
    resource: Mapping[str, Any], schemas: Mapping[tuple[str, str], dict[str, Any]]
) -> list[SchemaViolation]:
    key = (str(resource.get("apiVersion")), str(resource.get("kind")))
    if key not in schemas:
        return [SchemaViolation(field="kind", reason="unknown", message=f"no CRD for {key[0]} {key[1]}")]
    validator = jsonschema.Draft202012Validator(
        schemas[key], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    violations = []
    for error in validator.iter_errors(dict(resource)):
        parts = list(error.absolute_path)
        if error.validator == "required":
            # jsonschema reports the parent; the apiserver names the missing field itself.
            missing = str(error.message).split("'")[1]
            parts.append(missing)
        violations.append(SchemaViolation(field=field_path(parts), reason=str(error.validator), message=error.message))
    return violations
