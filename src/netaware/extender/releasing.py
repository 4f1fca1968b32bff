"""The AppGroup controller inside the extender process: removes the `netaware.io/dependency-order` scheduling
gate from pods whose dependencies are placed (rule in core/release.py), and keeps each AppGroup's status (topology
order, where each workload runs, the plan) up to date. Runs as one daemon thread over the extender's watched state.

Under `strategy: plan` it plans, then steers, the way Kueue's topology-aware scheduling does: once every workload of
the group has pods (or an absent one's grace period is over), it plans the whole group (extender/planned.py; the
replicas it expects come from the pods' owners, so a Deployment's pods not created yet keep their room), narrows
each gated pod's required node affinity to its planned node (Kubernetes allows that while a pod is gated), records
the node in the `netaware.io/planned-node` annotation and removes the gate, all in one write. kube-scheduler then
has a single feasible node: it asks the extender's filter about that one node and skips scoring. A narrowed pod
that stays unschedulable (the node filled up or went away) for `REPLAN_AFTER_S` is deleted when it has an owner, so
that the owner creates it again, gated, and it is planned anew; a bare pod is left Pending with the reason in an
Event. A group that cannot be planned (it fits nowhere) has its pods released as they are, scored pod by pod."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from netaware.core.appgroup import AppGroup, CostWeights, topological_order
from netaware.core.nodeselection import narrowed_to_node
from netaware.core.planning import PLAN, Plan, placement_network_ms
from netaware.core.release import (
    ABSENT_DEPENDENCY_GRACE_S,
    DEPENDENCY_ORDER_GATE,
    MemberPod,
    assign_planned_nodes,
    pods_to_release,
)
from netaware.core.scoring import DEFAULT_STRATEGY, PRICES_OWN_REPLICAS
from netaware.extender.planned import GroupPlans, held_node, predicted_network_ms
from netaware.kube import api as kube
from netaware.kube.converters import GROUP, VERSION, appgroup_status
from netaware.kube.stores import PLANNED_NODE_ANNOTATION, ClusterStore, PodInfo
from netaware.kube.watching import list_raw

log = logging.getLogger("netaware.releasing")

# How often the controller looks for work; it acts only when the watched state changed since its last pass.
POLL_INTERVAL_S = 0.2
# How long a pod narrowed to its planned node may stay unschedulable there before it is planned again (the scheduler
# retries an unschedulable pod within seconds when the cluster changes; a node that filled up or went away does not
# come back by waiting).
REPLAN_AFTER_S = 10.0
# Drift smaller than this is not worth moving a running pod, whatever the ratio (a fresh plan at 0 ms per request
# would otherwise make 0.1 ms "infinitely" worse).
REBALANCE_MIN_GAIN_MS = 1.0
# Narrowed pods released at once (the client's connection pool holds ten on this machine's two cores).
PARALLEL_WRITES = 8
# How long an owner's replica count is trusted (one read per owner and period while its pods wait).
OWNER_TTL_S = 2.0


class AppGroupController:
    def __init__(
        self,
        *,
        api: kube.ApiClient,
        store: ClusterStore,
        default_strategy: str = DEFAULT_STRATEGY,
        default_weights: CostWeights | None = None,
        plans: GroupPlans | None = None,
    ) -> None:
        self._default_strategy = default_strategy
        self._default_weights = default_weights or CostWeights()
        self._plans = plans or GroupPlans(store)
        self._last_plan: dict[str, Plan] = {}
        """AppGroup key -> the plan its pods were last steered by (shown in its status)."""
        self._owner_replicas: dict[str, tuple[float, int | None]] = {}
        """namespace/kind/name -> (read at, spec.replicas; None: the owner is gone or unreadable)."""
        self._reported: set[str] = set()
        """Bare pods already given an Event for staying unschedulable on their planned node."""
        self._apps = kube.AppsV1Api(api)
        self._writers = ThreadPoolExecutor(max_workers=PARALLEL_WRITES, thread_name_prefix="appgroup-writer")
        self._expected: dict[str, dict[str, int]] = {}
        """AppGroup key -> workload -> replicas its owners ask for (groups steered by a plan)."""
        self._looked_at: dict[str, float] = {}
        """AppGroup key -> monotonic time its drift was last looked at (once per rebalance period)."""
        self._predicted: dict[str, tuple[object, float | None]] = {}
        """AppGroup key -> (what the figure was computed from, predicted network ms of the current placement)."""
        self._released_at: dict[str, float] = {}
        """Pods this controller released, and when (a pod released one at a time holds its siblings until bound)."""
        self._core = kube.CoreV1Api(api)
        self._custom = kube.CustomObjectsApi(api)
        self._store = store
        self._written_status: dict[str, dict[str, Any]] = {}
        self._seen_version = -1
        self.waiting = False
        """Whether the last pass left gated pods behind (they may become releasable with time alone)."""

    def reconcile_once(self) -> list[str]:
        """Release what may be released and refresh statuses; returns the released pods' keys."""
        released: list[str] = []
        self.waiting = False
        members_now: set[str] = set()
        for group in self._store.appgroups():
            members = self._store.members(group)
            pods = [
                MemberPod(
                    key=f"{pod.namespace}/{pod.name}",
                    workload=workload,
                    gated=DEPENDENCY_ORDER_GATE in pod.scheduling_gates,
                    bound=bool(pod.node_name),
                    created_at_s=pod.created_at_s,
                    released_at_s=self._released_at.get(f"{pod.namespace}/{pod.name}"),
                )
                for pod, workload in members
            ]
            members_now.update(p.key for p in pods)
            strategy = group.strategy or self._default_strategy
            self.waiting = self.waiting or any(p.gated for p in pods)
            by_key = {pod.key: pod for pod, _ in members}
            if strategy == PLAN:
                steered, unplanned = self._steer(group, members)
                released += steered
                if group.rebalance is not None:
                    self._rebalance(group, members)
            else:
                one_at_a_time = strategy in PRICES_OWN_REPLICAS
                unplanned = pods_to_release(group, pods, now_s=time.time(), one_replica_at_a_time=one_at_a_time)
            for key in unplanned:
                if self._release(by_key[key], group):
                    released.append(key)
            self._write_status(group, members)
        self._released_at = {key: at for key, at in self._released_at.items() if key in members_now}
        self._reported &= members_now
        return released

    def _release(self, pod: PodInfo, group: AppGroup, node: str | None = None) -> bool:
        """Remove the gate; with `node`, narrow the pod's required node affinity to it in the same write. A JSON
        merge patch: the annotations map is merged, the gate and node selector term lists replaced as a whole."""
        remaining = [{"name": g} for g in pod.scheduling_gates if g != DEPENDENCY_ORDER_GATE]
        patch: dict[str, Any] = {"spec": {"schedulingGates": remaining}}
        if node is not None:
            patch["spec"]["affinity"] = narrowed_to_node(pod.node_constraints, node)
            patch["metadata"] = {"annotations": {PLANNED_NODE_ANNOTATION: node}}
        try:
            self._core.patch_namespaced_pod(
                pod.name, pod.namespace, patch, _content_type="application/merge-patch+json"
            )
        except kube.ApiException as error:
            log.warning("releasing %s failed: %s", pod.key, error.reason)
            return False
        self._released_at[pod.key] = time.time()
        log.info("released", extra={"event": "released", "pod": pod.key, "appgroup": group.name, "node": node})
        return True

    def _steer(self, group: AppGroup, members: list[tuple[PodInfo, str]]) -> tuple[list[str], list[str]]:
        """Plan the group and narrow its gated pods to their planned nodes. Returns the pods steered and the gated
        pods to release without a node (the group cannot be planned, or a pod has no slot in the plan)."""
        self._replan_unschedulable(group, members)
        gated = sorted(
            ((pod, workload) for pod, workload in members if DEPENDENCY_ORDER_GATE in pod.scheduling_gates),
            key=lambda member: (member[0].created_at_s or 0.0, member[0].name),
        )
        if not gated:
            return [], []
        now = time.time()
        oldest = min(pod.created_at_s or now for pod, _ in gated)
        present = {workload for _, workload in members}
        if set(group.workload_names) - present and now - oldest < ABSENT_DEPENDENCY_GRACE_S:
            return [], []  # the rest of the app is still being created: plan it whole
        expected = self._expected_replicas(members)
        self._expected[f"{group.namespace}/{group.name}"] = expected
        self._plans.expect(group, expected)
        link_costs = self._store.link_costs(group.weights or self._default_weights)
        current = self._plans.plan_for(group, link_costs, members)
        if current is None:
            return [], [pod.key for pod, _ in gated]
        self._last_plan[f"{group.namespace}/{group.name}"] = current
        held: dict[str, list[str]] = {}
        for pod, workload in members:
            if node := held_node(pod):
                held.setdefault(workload, []).append(node)
        nodes = assign_planned_nodes(current.placements, held, [(pod.key, workload) for pod, workload in gated])
        # Each narrowed pod has its one node, so the order of the writes does not matter: several at once (the API
        # server's round trip, not the plan, is what a large group waits for).
        chosen = [pod for pod, _ in gated if pod.key in nodes]
        done = self._writers.map(lambda pod: self._release(pod, group, nodes[pod.key]), chosen)
        steered = [pod.key for pod, ok in zip(chosen, done, strict=True) if ok]
        return steered, [pod.key for pod, _ in gated if pod.key not in nodes]

    def _rebalance(self, group: AppGroup, members: list[tuple[PodInfo, str]]) -> None:
        """Re-plan on drift: when every pod runs and where they run is predicted `min_improvement_percent` slower
        than a fresh plan (and at least REBALANCE_MIN_GAIN_MS), the group moves to that plan: each period, up to
        `max_pods` pods of one workload that it puts elsewhere (the first such workload in the group's order) are
        evicted, their owners recreate them and they are steered to the fresh plan's nodes. Bare pods are never
        evicted. A move waits until the pods moved before it run again."""
        policy = group.rebalance
        if policy is None or not members or any(not pod.placed for pod, _ in members):
            return  # still placing: not the steady state to compare
        key = f"{group.namespace}/{group.name}"
        self.waiting = True  # the network may drift with no change to the pods: come back when the period is over
        if time.monotonic() - self._looked_at.get(key, float("-inf")) < policy.period_s:
            return
        self._looked_at[key] = time.monotonic()  # once per period: a fresh plan costs up to PLAN_TIME_LIMIT_S
        link_costs = self._store.link_costs(group.weights or self._default_weights)
        placements = self._store.placements(group)
        current_ms = placement_network_ms(group, link_costs.topology, placements)
        fresh = self._plans.target(group, members)  # already moving: on to the same plan
        if fresh is None:
            fresh = self._plans.fresh_plan(group, link_costs, members)
            if fresh is None:
                return
            threshold = fresh.predicted_ms * (1 + policy.min_improvement_percent / 100)
            if current_ms <= threshold or current_ms - fresh.predicted_ms < REBALANCE_MIN_GAIN_MS:
                return
            pods = len(members)
            self._plans.move_to(group, fresh, for_s=policy.period_s * (pods / policy.max_pods + 2) + REPLAN_AFTER_S)
        movable: list[PodInfo] = []
        for workload in topological_order(group):
            misplaced = Counter(placements.get(workload, [])) - Counter(fresh.placements.get(workload, []))
            for pod, name in sorted(members, key=lambda member: member[0].name):
                if name == workload and pod.owner and misplaced[pod.node_name or ""] > 0:
                    misplaced[pod.node_name or ""] -= 1
                    movable.append(pod)
            if movable:
                break
        reason = (f"predicted {current_ms:.1f} ms of network per request where the group runs, "
                  f"{fresh.predicted_ms:.1f} with a fresh plan (rebalance at {policy.min_improvement_percent:g}% "
                  "better)")  # fmt: skip
        for pod in movable[: policy.max_pods]:
            eviction: Any = {"apiVersion": "policy/v1", "kind": "Eviction",
                             "metadata": {"name": pod.name, "namespace": pod.namespace}}  # fmt: skip
            try:
                self._core.create_namespaced_pod_eviction(pod.name, pod.namespace, eviction)
            except kube.ApiException as error:  # 429: a PodDisruptionBudget forbids it now; next period
                log.info("eviction of %s refused: %s", pod.key, error.reason)
                continue
            log.info("rebalanced", extra={"event": "rebalanced", "pod": pod.key, "appgroup": group.name,
                                          "from": pod.node_name, "reason": reason})  # fmt: skip
            self._event(pod, "Rebalanced", f"evicted from {pod.node_name} to be planned again: {reason}")

    def _expected_replicas(self, members: list[tuple[PodInfo, str]]) -> dict[str, int]:
        """Workload -> the replicas its pods' owners ask for (bare pods count themselves)."""
        expected: dict[str, int] = {}
        owners: dict[str, set[str]] = {}
        for pod, workload in members:
            if pod.owner:
                owners.setdefault(workload, set()).add(f"{pod.namespace}/{pod.owner}")
            else:
                expected[workload] = expected.get(workload, 0) + 1
        for workload, keys in owners.items():
            expected[workload] = expected.get(workload, 0) + sum(self._replicas_of(key) or 0 for key in keys)
        return expected

    def _replicas_of(self, owner: str) -> int | None:
        read_at, replicas = self._owner_replicas.get(owner, (float("-inf"), None))
        if time.monotonic() - read_at < OWNER_TTL_S:
            return replicas
        namespace, kind, name = owner.split("/", 2)
        readers = {
            "ReplicaSet": self._apps.read_namespaced_replica_set,
            "StatefulSet": self._apps.read_namespaced_stateful_set,
        }
        replicas = None
        if kind in readers:
            try:
                spec = list_raw(lambda **kw: readers[kind](name, namespace, **kw)).get("spec") or {}
                replicas = int(spec.get("replicas", 1))  # unset: the API's default, 1
            except kube.ApiException as error:
                log.warning("reading the replica count of %s failed: %s", owner, error.reason)
        self._owner_replicas[owner] = (time.monotonic(), replicas)
        return replicas

    def _replan_unschedulable(self, group: AppGroup, members: list[tuple[PodInfo, str]]) -> None:
        """Narrowed pods that stayed unschedulable on their node: owned ones are deleted (their owner creates them
        again, gated, and they are planned anew); a bare pod gets an Event once and stays Pending."""
        now = time.time()
        for pod, workload in members:
            if not (pod.planned_node and held_node(pod) and pod.unschedulable_since_s is not None):
                continue
            if now - pod.unschedulable_since_s < REPLAN_AFTER_S:
                self.waiting = True  # a pass must come back when its time is up, even if nothing else changes
                continue
            reason = f"unschedulable on its planned node {pod.planned_node} for {REPLAN_AFTER_S:g} s"
            self._plans.avoid(group, workload, pod.planned_node)
            if pod.owner:
                try:
                    self._core.delete_namespaced_pod(pod.name, pod.namespace)
                except kube.ApiException as error:
                    log.warning("deleting %s to re-plan it failed: %s", pod.key, error.reason)
                    continue
                log.info("re-planning", extra={"event": "replanned", "pod": pod.key, "appgroup": group.name,
                                               "reason": reason})  # fmt: skip
                self._event(pod, "Replanned", f"deleted to be planned again: {reason}; {pod.owner} recreates it")
            elif pod.key not in self._reported:
                self._reported.add(pod.key)
                self._event(pod, "PlannedNodeUnavailable", f"{reason}; a bare pod is not recreated, delete it to retry")

    def _event(self, pod: PodInfo, reason: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body: Any = {
            "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
            "involvedObject": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "netaware-appgroup-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(pod.namespace, body)
        except kube.ApiException as error:
            log.warning("recording event %s on %s failed: %s", reason, pod.key, error.reason)

    def _write_status(self, group: AppGroup, members: list[tuple[PodInfo, str]]) -> None:
        key = f"{group.namespace}/{group.name}"
        placements = self._store.placements(group)
        topology = self._store.link_costs(group.weights or self._default_weights).topology
        signature = (id(topology), tuple((w, tuple(sorted(placements.get(w, [])))) for w in group.workload_names))
        if self._predicted.get(key, (None, None))[0] != signature:
            self._predicted[key] = (signature, predicted_network_ms(group, topology, placements))
        expected = self._expected.get(key, {})
        counts = Counter(workload for _, workload in members)
        status = appgroup_status(
            group,
            placements,
            strategy=group.strategy or self._default_strategy,
            pods=sum(max(counts[w], expected.get(w, 0)) for w in group.workload_names),
            predicted_ms=self._predicted[key][1],
            plan=self._last_plan.get(key),
        )
        if self._written_status.get(key) == status:
            return
        # A merge patch keeps what it does not name: a figure no longer known (a workload's pods all gone, no plan)
        # is removed with null, or the status would go on showing the old one.
        gone = {field: None for field in ("predictedNetworkMs", "plan") if field not in status}
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                group.namespace,
                "appgroups",
                group.name,
                {"status": {**status, **gone}},
                _content_type="application/merge-patch+json",
            )
            self._written_status[key] = status
        except kube.ApiException as error:
            log.warning("writing status of AppGroup %s failed: %s", key, error.reason)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_INTERVAL_S):
            version = self._store.version
            # Nothing changed: only a pod still waiting (for an absent dependency's grace period) needs a pass.
            if not self._store.ready or (version == self._seen_version and not self.waiting):
                continue
            self._seen_version = version
            try:
                self.reconcile_once()
            except Exception:  # keep the controller alive; the next change retries
                log.exception("AppGroup reconcile failed")

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self.run, args=(stop,), name="appgroup-controller", daemon=True).start()
