"""The import-linter contract that keeps the Kubernetes client behind kube/ names its source modules one by one
(import-linter has no "all but"): every top-level module of netaware other than kube must be on that list, so a new
module cannot slip past the rule unseen."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import netaware

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_module_but_kube_is_kept_from_the_kubernetes_client() -> None:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c.get("forbidden_modules") == ["kubernetes"]]
    modules = {f"netaware.{m.name}" for m in pkgutil.iter_modules(netaware.__path__)} - {"netaware.kube"}
    assert modules - set(contract["source_modules"]) == set()
    assert set(contract["source_modules"]) - modules == set()  # no stale names either
