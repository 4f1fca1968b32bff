"""The whole-group planner (core/planning.py): the predicted time, the exact and heuristic searches against brute
force, capacity, node selection, hard limits, missing data, and `netaware plan`."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from netaware.cli import app
from netaware.core.nodeselection import NodeSelectionError, pod_fits_node
from netaware.core.planning import (
    MISSING_RTT_MS,
    RTO_MS,
    InfeasibleError,
    Objective,
    PlanEdge,
    PlanningProblem,
    PlanWorkload,
    evaluate,
    parse_nodes_csv,
    plan,
)
from netaware.core.quantities import memory_bytes
from netaware.core.topology import DenseTopology
from netaware.simulation.apps import apps_for
from netaware.simulation.clusters import CLUSTERS, with_capacity
from netaware.simulation.placing import planning_problem


def topology(rtt: list[list[float]], *, loss: float = 0.0, bandwidth: float = 1000.0) -> DenseTopology:
    n = len(rtt)
    nodes = [f"n{i}" for i in range(n)]
    matrix = np.array(rtt, dtype=np.float32)
    return DenseTopology.from_matrices(
        nodes=nodes,
        rtt_ms=matrix,
        bandwidth_mbps=np.full((n, n), bandwidth),
        loss_ratio=np.where(np.eye(n, dtype=bool), 0.0, loss),
    )


def random_problem(seed: int, *, limits: bool = False) -> PlanningProblem:
    rng = np.random.default_rng(seed)
    n = 4
    rtt = rng.uniform(1, 50, size=(n, n))
    rtt = (rtt + rtt.T) / 2
    np.fill_diagonal(rtt, 0)
    workloads = (
        PlanWorkload("a", 2, 500),
        PlanWorkload("b", 1, 1000),
        PlanWorkload("c", 2, 250, nodes=frozenset({"n1", "n2", "n3"})),
    )
    edges = (
        PlanEdge("a", "b", calls=float(rng.integers(1, 4)), max_latency_ms=30.0 if limits else None),
        PlanEdge("b", "c", calls=float(rng.integers(1, 4))),
        PlanEdge("a", "c", calls=1.0),
    )
    return PlanningProblem(
        workloads=workloads,
        edges=edges,
        nodes=tuple(f"n{i}" for i in range(n)),
        free_cpu_m=(1000, 1000, 1000, 1000),
        topology=topology(rtt.tolist()),
    )


def brute_force(problem: PlanningProblem) -> float:
    """The lowest predicted ms over every placement that fits, follows node selection and keeps the limits."""
    replicas = [(w, r) for w in problem.workloads for r in range(w.replicas)]
    best = math.inf
    for choice in itertools.product(problem.nodes, repeat=len(replicas)):
        used = dict.fromkeys(problem.nodes, 0)
        placements: dict[str, list[str]] = {w.name: [] for w in problem.workloads}
        for (workload, _), node in zip(replicas, choice, strict=True):
            used[node] += workload.cpu_m
            placements[workload.name].append(node)
        if any(used[n] > free for n, free in zip(problem.nodes, problem.free_cpu_m, strict=True)):
            continue
        if any(w.nodes is not None and not set(placements[w.name]) <= w.nodes for w in problem.workloads):
            continue
        if not keeps_limits(problem, placements):
            continue
        best = min(best, evaluate(problem, placements)[0])
    return best


def keeps_limits(problem: PlanningProblem, placements: dict[str, list[str]]) -> bool:
    for edge in problem.edges:
        if edge.max_latency_ms is None:
            continue
        for n in placements[edge.caller]:
            for m in placements[edge.callee]:
                if n != m and problem.topology.rtt_ms[problem.topology.index[n], problem.topology.index[m]] > (
                    edge.max_latency_ms
                ):
                    return False
    return True


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("limits", [False, True])
def test_the_integer_program_finds_the_brute_force_optimum(seed: int, limits: bool) -> None:
    problem = random_problem(seed, limits=limits)
    result = plan(problem, exact=True)
    assert result.optimal and result.method == "integer program"
    assert result.predicted_ms == pytest.approx(brute_force(problem), rel=1e-5)
    assert keeps_limits(problem, result.placements)


@pytest.mark.parametrize("seed", range(6))
def test_the_heuristic_keeps_every_rule_and_comes_close(seed: int) -> None:
    problem = random_problem(seed, limits=True)
    result = plan(problem, exact=False, time_limit_s=2)
    assert not result.optimal and result.method == "local search"
    assert sorted(len(v) for v in result.placements.values()) == [1, 2, 2]
    used = dict.fromkeys(problem.nodes, 0)
    for workload in problem.workloads:
        for node in result.placements[workload.name]:
            used[node] += workload.cpu_m
    assert all(used[n] <= 1000 for n in problem.nodes)
    assert set(result.placements["c"]) <= {"n1", "n2", "n3"}
    assert keeps_limits(problem, result.placements)
    assert result.predicted_ms <= 1.5 * brute_force(problem) + 1e-9


def test_predicted_time_adds_loss_and_payload_terms() -> None:
    # Two nodes 10 ms apart with 1% loss at 100 Mbit/s, each 1 CPU; two 1-CPU workloads must be apart.
    problem = PlanningProblem(
        workloads=(PlanWorkload("caller", 1, 1000), PlanWorkload("callee", 1, 1000)),
        edges=(PlanEdge("caller", "callee", calls=2.0, payload_bytes=12_500),),
        nodes=("n0", "n1"),
        free_cpu_m=(1000, 1000),
        topology=topology([[0, 10], [10, 0]], loss=0.01, bandwidth=100.0),
    )
    result = plan(problem)
    segments = 1 + math.ceil(12_500 / 1448)  # the request and the reply's 9 segments
    per_call = 10 + segments * 0.01 * RTO_MS + 12_500 * 8 / (100 * 1000)
    assert result.edges[0].ms_per_call == pytest.approx(per_call, rel=1e-5)
    assert result.predicted_ms == pytest.approx(2 * per_call, rel=1e-5)
    assert result.largest_edges(1)[0][1] == pytest.approx(1.0)


def test_co_location_costs_nothing_and_replicas_average_over_pairs() -> None:
    problem = PlanningProblem(
        workloads=(PlanWorkload("front", 2, 100), PlanWorkload("back", 1, 100)),
        edges=(PlanEdge("front", "back", calls=1.0),),
        nodes=("n0", "n1"),
        free_cpu_m=(1000, 1000),
        topology=topology([[0, 8], [8, 0]]),
    )
    assert evaluate(problem, {"front": ["n0", "n0"], "back": ["n0"]})[0] == 0.0
    assert evaluate(problem, {"front": ["n0", "n1"], "back": ["n0"]})[0] == pytest.approx(4.0)  # (0 + 8) / 2
    assert plan(problem).predicted_ms == 0.0


def test_an_unmeasured_link_is_never_cheaper_than_a_measured_one() -> None:
    nan = float("nan")
    rtt = [[0, 90, nan], [90, 0, nan], [nan, nan, 0]]  # n2 is measured to nobody
    problem = PlanningProblem(
        workloads=(PlanWorkload("a", 1, 1000), PlanWorkload("b", 1, 1000)),
        edges=(PlanEdge("a", "b", calls=1.0),),
        nodes=("n0", "n1", "n2"),
        free_cpu_m=(1000, 1000, 1000),
        topology=topology(rtt),
    )
    result = plan(problem)
    assert "n2" not in result.placements["a"] + result.placements["b"]
    assert result.predicted_ms == pytest.approx(90.0)
    assert evaluate(problem, {"a": ["n0"], "b": ["n2"]})[0] == MISSING_RTT_MS


def test_a_group_that_cannot_fit_is_an_error() -> None:
    problem = random_problem(0)
    tight = PlanningProblem(**{**problem.__dict__, "free_cpu_m": (500, 500, 500, 500)})
    with pytest.raises(InfeasibleError):
        plan(tight)
    with pytest.raises(InfeasibleError):
        plan(tight, exact=False)


def test_an_unknown_workload_in_an_edge_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workload 'ghost'"):
        PlanningProblem(
            workloads=(PlanWorkload("a", 1, 1),),
            edges=(PlanEdge("a", "ghost", calls=1.0),),
            nodes=("n0",),
            free_cpu_m=(1,),
            topology=topology([[0]]),
        )


def test_a_start_placement_is_improved_upon() -> None:
    problem = random_problem(3)
    start = {"a": ["n0", "n1"], "b": ["n2"], "c": ["n3", "n3"]}
    result = plan(problem, exact=False, start=start)
    assert result.predicted_ms <= evaluate(problem, start)[0] + 1e-9


def test_running_replicas_stay_and_the_rest_is_planned_around_them() -> None:
    problem = random_problem(2)
    running = PlanningProblem(**{**problem.__dict__, "placed": {"a": ["n3"], "b": ["n0"]}})
    for exact in (True, False):
        result = plan(running, exact=exact)
        assert "n3" in result.placements["a"] and result.placements["b"] == ["n0"]
    with pytest.raises(ValueError, match="placed replicas"):
        PlanningProblem(**{**problem.__dict__, "placed": {"b": ["n0", "n1"]}})


def test_the_seed_objective_is_the_simulators_network_cost() -> None:
    from netaware.simulation.metrics import evaluate as simulated
    from netaware.simulation.placing import Simulation

    cluster = with_capacity(CLUSTERS["multi-region"](9, 1), (1000, 2000, 2000), 1)
    apps = apps_for("star", pods=5, seed=1)
    simulation = Simulation(cluster, "plan-seed")
    placements = simulation.run(apps)
    metrics = simulated(cluster, apps, placements, simulation.link_costs.cost)
    result = plan(planning_problem(cluster, apps, Objective.SEED), exact=True)
    assert metrics.network_cost == pytest.approx(result.objective_value, rel=1e-4)


def test_the_planner_is_near_the_optimum_on_the_simulators_small_instances() -> None:
    ratios = []
    for seed in range(2):
        for kind in CLUSTERS:
            cluster = with_capacity(CLUSTERS[kind](8 + seed, seed), (1000, 2000, 2000), seed)
            problem = planning_problem(cluster, apps_for("online-boutique", pods=11, seed=seed))
            heuristic = plan(problem, exact=False, time_limit_s=2)
            optimum = plan(problem, exact=True, time_limit_s=60)
            assert heuristic.predicted_ms >= optimum.predicted_ms - 1e-6
            ratios.append(heuristic.predicted_ms / optimum.predicted_ms)
    assert max(ratios) <= 1.5, ratios


# --- node selection, quantities, nodes.csv -----------------------------------------------------------------------


def test_node_selection_follows_kubernetes_semantics() -> None:
    labels = {"topology.kubernetes.io/zone": "a", "size": "8"}
    assert pod_fits_node({}, "n0", labels)
    assert pod_fits_node({"nodeSelector": {"topology.kubernetes.io/zone": "a"}}, "n0", labels)
    assert not pod_fits_node({"nodeSelector": {"topology.kubernetes.io/zone": "b"}}, "n0", labels)

    def affinity(*terms: dict[str, object]) -> dict[str, object]:
        required = {"nodeSelectorTerms": list(terms)}
        return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}

    zone_b = {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}
    big = {"matchExpressions": [{"key": "size", "operator": "Gt", "values": ["4"]}]}
    named = {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n0"]}]}
    assert not pod_fits_node(affinity(zone_b), "n0", labels)
    assert pod_fits_node(affinity(zone_b, big), "n0", labels)  # terms are ORed
    assert not pod_fits_node(affinity({"matchExpressions": [*zone_b["matchExpressions"], *big["matchExpressions"]]}),
                             "n0", labels)  # fmt: skip
    assert not pod_fits_node(affinity(named), "n0", labels)
    assert pod_fits_node(affinity(named), "n1", labels)
    assert not pod_fits_node(affinity({}), "n0", labels)  # an empty term matches nothing
    with pytest.raises(NodeSelectionError, match="unknown 'Near'"):
        pod_fits_node(affinity({"matchExpressions": [{"key": "k", "operator": "Near"}]}), "n0", labels)


def test_memory_quantities() -> None:
    assert memory_bytes("128Mi") == 128 * 2**20
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("1e3") == 1000
    with pytest.raises(ValueError, match="12 parsecs"):
        memory_bytes("12 parsecs")


def test_nodes_csv_errors_name_the_line() -> None:
    assert parse_nodes_csv("name,zone,cpu_millicores\nn0,a,2000\n")[0].free_cpu_m == 2000
    with pytest.raises(ValueError, match="line 1: header"):
        parse_nodes_csv("node,cpu\n")
    with pytest.raises(ValueError, match="line 3: node n0 is listed twice"):
        parse_nodes_csv("name,zone,cpu_millicores\nn0,a,1\nn0,a,1\n")
    with pytest.raises(ValueError, match="line 2: cpu_millicores must be an integer"):
        parse_nodes_csv("name,zone,cpu_millicores\nn0,a,lots\n")


# --- netaware plan -----------------------------------------------------------------------------------------------

ZONES = {"a": 0, "b": 1, "c": 2}
BETWEEN_ZONES_MS = {(0, 1): 20.0, (0, 2): 40.0, (1, 2): 30.0}


def write_cluster(folder: Path, *, cpu_m: int = 2000, extra_link_node: str | None = None) -> tuple[Path, Path]:
    """Three zones of three nodes: 0.5 ms inside a zone, 20-40 ms between zones."""
    nodes = [(f"{z}{i}", z) for z in ZONES for i in range(3)]
    nodes_csv = folder / "nodes.csv"
    nodes_csv.write_text("name,zone,cpu_millicores\n" + "".join(f"{n},{z},{cpu_m}\n" for n, z in nodes))
    lines = ["origin,destination,rtt_ms,bandwidth_mbps,loss_ratio"]
    for (n, z), (m, y) in itertools.permutations(nodes, 2):
        rtt = 0.5 if z == y else BETWEEN_ZONES_MS[tuple(sorted((ZONES[z], ZONES[y])))]  # type: ignore[index]
        lines.append(f"{n},{m},{rtt},1000,0")
    if extra_link_node:
        lines.append(f"a0,{extra_link_node},1,1000,0")
    links_csv = folder / "links.csv"
    links_csv.write_text("\n".join(lines) + "\n")
    return links_csv, nodes_csv


def app_manifests(folder: Path, *, frontend_zone: str | None = None, replicas: int = 2) -> Path:
    """front (replicas) -> back -> db, 500m each, as a user writes them: Deployments and an AppGroup."""

    def deployment(name: str, count: int) -> dict[str, object]:
        spec: dict[str, object] = {
            "containers": [{"name": "app", "image": "app", "resources": {"requests": {"cpu": "500m"}}}]
        }
        if name == "front" and frontend_zone:
            spec["nodeSelector"] = {"topology.kubernetes.io/zone": frontend_zone}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": count, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
        }  # fmt: skip

    group = {
        "apiVersion": "netaware.io/v1alpha1",
        "kind": "AppGroup",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"workloads": [
            {"name": "front", "selector": {"matchLabels": {"app": "front"}},
             "dependencies": [{"workload": "back", "weight": 2}]},
            {"name": "back", "selector": {"matchLabels": {"app": "back"}},
             "dependencies": [{"workload": "db", "weight": 3}]},
            {"name": "db", "selector": {"matchLabels": {"app": "db"}}},
        ]},
    }  # fmt: skip
    path = folder / "app.yaml"
    docs = [deployment("front", replicas), deployment("back", 1), deployment("db", 1), group]
    path.write_text(yaml.safe_dump_all(docs))
    return path


def run_plan(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["plan", *(str(a) for a in args)])
    return result.exit_code, result.output


def test_plan_prints_json_placements_and_milliseconds(tmp_path: Path) -> None:
    links, nodes = write_cluster(tmp_path, cpu_m=1500)
    manifests = app_manifests(tmp_path, frontend_zone="b")
    code, output = run_plan("--manifests", manifests, "--links", links, "--nodes", nodes, "--json")
    assert code == 0, output
    answer = json.loads(output)
    placements = answer["placements"]
    assert sorted(placements) == ["back", "db", "front"] and len(placements["front"]) == 2
    assert all(n.startswith("b") for n in placements["front"])  # its nodeSelector
    # 4 x 500m on 1.5-CPU nodes: one front replica, back and db on one zone-b node, the other front beside it
    # (half of front's 2 calls to back cross 0.5 ms), not db apart (back's 3 calls to it would).
    assert all(n.startswith("b") for n in placements["back"] + placements["db"])
    assert placements["back"] == placements["db"] and placements["back"][0] in placements["front"]
    assert answer["optimal"] is True
    assert answer["predictedNetworkMs"] == pytest.approx(2 * 0.5 / 2, abs=1e-3)
    code, table = run_plan("--manifests", manifests, "--links", links, "--nodes", nodes)
    assert code == 0 and "predicted network time: 0.50 ms per request" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("too-small", "fits on no node"),
        ("unknown-link-node", "name nodes that"),
        ("unknown-workload", "unknown workload"),
        ("no-appgroup", "expected one AppGroup, found 0"),
        ("no-file", "no such file"),
    ],
)
def test_plan_refuses_bad_input_with_one_line(tmp_path: Path, change: str, message: str) -> None:
    links, nodes = write_cluster(
        tmp_path, cpu_m=400 if change == "too-small" else 2000,
        extra_link_node="z9" if change == "unknown-link-node" else None,
    )  # fmt: skip
    manifests = app_manifests(tmp_path)
    documents = list(yaml.safe_load_all(manifests.read_text()))
    if change == "unknown-workload":
        documents[-1]["spec"]["workloads"][0]["dependencies"].append({"workload": "ghost"})
    if change == "no-appgroup":
        documents = documents[:-1]
    manifests.write_text(yaml.safe_dump_all(documents))
    if change == "no-file":
        manifests = tmp_path / "missing.yaml"
    code, output = run_plan("--manifests", manifests, "--links", links, "--nodes", nodes)
    assert code != 0
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], output


@pytest.mark.parametrize("exact", [True, False])
def test_a_node_takes_no_more_pods_than_its_free_pod_slots(exact: bool) -> None:
    """kubelet's max-pods is a limit like CPU: four tiny replicas that all want the node of the one they call go
    there only as far as its free slots allow, the rest to the next best node (the benchmark once planned 1,000 pods
    onto nodes that take 110 each, and they stayed Pending)."""
    nodes = ("n0", "n1", "n2")
    rtt = np.array([[0.1, 5.0, 50.0], [5.0, 0.1, 50.0], [50.0, 50.0, 0.1]], dtype=np.float32)
    topology = DenseTopology(
        nodes=nodes, index={n: i for i, n in enumerate(nodes)}, rtt_ms=rtt,
        bandwidth_mbps=np.full((3, 3), 1000.0, dtype=np.float32), loss_ratio=np.zeros((3, 3), dtype=np.float32),
    )  # fmt: skip
    problem = PlanningProblem(
        workloads=(PlanWorkload("db", 1, 100), PlanWorkload("web", 4, 100)),
        edges=(PlanEdge("web", "db", calls=1),),
        nodes=nodes,
        free_cpu_m=(32_000,) * 3,
        topology=topology,
        placed={"db": ["n0"]},
        free_pods=(2, 10, 10),
    )
    result = plan(problem, exact=exact, time_limit_s=5)
    assert sorted(result.placements["web"]) == ["n0", "n0", "n1", "n1"], result.placements
    assert evaluate(problem, result.placements)[0] == pytest.approx(result.predicted_ms)
