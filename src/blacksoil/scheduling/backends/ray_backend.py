"""The Ray backend: the unified policy's decisions as Ray actors and placement groups.

Serving replicas are actors running the embedded engine, registered with the gateway's pool as they start and
removed as they stop or die (ray_serving.py); a learning gang is one placement group pinned to the topology domain
the policy chose (custom resources tag hosts and racks) with one real LoRA trainer rank per bundle, gloo between
them, restarted from its last checkpoint when a rank dies (ray_learning.py); an agent group is a STRICT_PACK
placement group. Ray has no preemption of its own: the policy checkpoints, kills and re-places.

Each step first reconciles the policy's view with what runs: serving replicas that are gone (a dead actor, a lost
node, or a blue replica a hot swap retired) leave its state, replicas someone else started (a swap's green) are
adopted, and a node that left the cluster offers nothing until a node with its host tag joins again; so the policy
replaces what was lost on the nodes that remain, where they have room. On nodes without host tags (a plain
`ray start` cluster) each node is a host by its Ray node id and replicas are pinned by node affinity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.ray_learning import LearnerSpec, RayGang
from blacksoil.scheduling.backends.ray_serving import EngineSpec, RayReplicas
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import Policy, UnifiedPolicy
from blacksoil.scheduling.state import Action, ClusterState, Decision, Plan
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.workloads import AgentGroup, LearningJob, ServingDeployment
from blacksoil.serving.pool import ReplicaPool

log = logging.getLogger(__name__)

HOST_PREFIX, RACK_PREFIX, POD_PREFIX = "blacksoil_host_", "blacksoil_rack_", "blacksoil_pod_"
TAG = 0.001  # a sliver of a tag resource pins a bundle to the hosts/racks carrying it


class AgentMember:
    """Holds one agent's share of an agent group's placement (the agents run in the gateway's runtime)."""

    def node(self) -> str:
        return _node_id()


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


@dataclass
class RayGroup:
    spec: AgentGroup
    members: int


@dataclass
class _Running:
    pg: Any
    actors: list[Any] = field(default_factory=list)
    gang: RayGang | None = None


class RayBackend:
    """Runs the unified policy against a Ray cluster whose nodes carry `accelerator` and topology tag resources."""

    def __init__(self, jobs: Sequence[LearningJob], demand: Callable[[], float], ckpt_dir: Path,
                 pool: ReplicaPool, learners: Mapping[str, LearnerSpec], groups: Sequence[RayGroup] = (),
                 accelerator: str = "GPU", cfg: SchedulingConfig | None = None, policy: Policy | None = None,
                 engine: EngineSpec | None = None, serving: RayReplicas | None = None, min_replicas: int = 1,
                 replica_units: int = 1):
        """`pool`: the gateway's replica pool the serving actors join; `learners`: what each job trains;
        `ckpt_dir`: where gangs checkpoint (`<ckpt_dir>/<job>`), a path every node sees; `serving`: the replica
        actors (None = new ones with `engine`); `replica_units`: `accelerator`s one replica takes (`CPU` on CPU
        nodes: its engine threads)."""
        import ray

        missing = [j.name for j in jobs if j.name not in learners]
        if missing:
            raise ConfigError(f"learning jobs {missing} have no LearnerSpec; pass one per job in `learners`")
        self.ray = ray
        self.learners = dict(learners)
        self.accel = accelerator
        self.cfg = cfg or SchedulingConfig(replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0)
        self.policy = policy or UnifiedPolicy(self.cfg)
        self.demand = demand
        self.ckpt_dir = ckpt_dir
        nodes = sorted((n for n in ray.nodes() if n["Alive"] and n["Resources"].get(accelerator, 0) >= replica_units),
                       key=_host)
        if not nodes:
            raise ConfigError(f"no alive Ray node offers {replica_units} of the {accelerator!r} resource; start "
                              "nodes with --num-cpus, --num-gpus or --resources")
        self.tagged = all(_tag(n, HOST_PREFIX) for n in nodes)
        if jobs and not self.tagged:
            raise ConfigError(f"learning gangs need a {HOST_PREFIX}<name> resource tag on every Ray node (e.g. "
                              f"--resources '{{\"{HOST_PREFIX}n0\": 1}}'); got hosts {[_host(n) for n in nodes]}")
        self.hosts = [_host(n) for n in nodes]
        self.node_ids = [str(n["NodeID"]) for n in nodes]
        """Ray node id now behind each host (a host that rejoins comes back with a new id)."""
        self.down: set[int] = set()
        """Hosts with no alive Ray node: they offer nothing until they join again."""
        self.replica_units = replica_units
        self.racks = [_tag(n, RACK_PREFIX) or h for n, h in zip(nodes, self.hosts, strict=True)]
        per_node = int(max(n["Resources"][accelerator] for n in nodes))
        cluster = Cluster.from_groups(per_node, self.racks, [_tag(n, POD_PREFIX) or "p0" for n in nodes])
        # Checkpoints are synchronous actor calls: a stop frees its accelerators on the same step.
        jobs = [LearningJob(j.name, j.size, 1e12, j.min_size, j.priority, 1e9, 0.0) for j in jobs]
        deployment = ServingDeployment("serving", replica_units, self.cfg.slo_max_utilization,
                                       min_replicas=min_replicas)
        self.groups = {g.spec.name: g for g in groups}
        self.state = ClusterState(cluster, [deployment], jobs, [g.spec for g in groups], restart_s=0.0,
                                  kill_grace_s=0.0, cold_start_s=0.0)
        self.state.keep_log = True
        self.serving = serving or RayReplicas(pool, engine)
        self.running: dict[str, _Running] = {}
        self.t0 = time.monotonic()

    @property
    def replicas(self) -> dict[int, list[str]]:
        """Gateway replica names of the serving actors on each node (index into self.hosts)."""
        index = {node: n for n, node in enumerate(self.node_ids)}
        out: dict[int, list[str]] = {}
        for name, node in self.serving.nodes().items():
            if node in index:
                out.setdefault(index[node], []).append(name)
        return out

    def step(self) -> Plan:
        st = self.state
        st.advance(max(1e-3, time.monotonic() - self.t0 - st.now))
        self._reconcile()
        st.serving["serving"].observe(float(self.demand()), self.cfg.forecast_alpha, self.cfg.forecast_beta)
        self.policy.observe(st)
        plan = self.policy.decide(st)
        st.apply(plan)
        for d in sorted(plan, key=lambda d: d.action not in (Action.STOP, Action.SHRINK, Action.SCALE_DOWN)):
            self._execute(d)
        st.advance(0.0)
        for r in self.running.values():
            if r.gang is not None:
                r.gang.poll()  # a dead rank restarts its gang from the last checkpoint here
        return plan

    # ---- what runs → the policy's state ----

    def _reconcile(self) -> None:
        """Hosts that left or rejoined the cluster, and serving replicas that are gone or were started by others."""
        st, s = self.state, self.state.serving["serving"]
        alive = {_host(n): str(n["NodeID"]) for n in self.ray.nodes() if n["Alive"]}
        for n, host in enumerate(self.hosts):
            if host not in alive and n not in self.down:
                log.warning("Ray node of host %s left the cluster; nothing is placed there until it joins again", host)
                self.down.add(n)
            elif host in alive and n in self.down:
                log.info("host %s joined the cluster again (Ray node %s)", host, alive[host])
                self.down.discard(n)
                self.node_ids[n] = alive[host]
                st.free[n] = self._capacity(n)
        actual = np.zeros(len(self.hosts), dtype=np.int64)
        for n, names in self.replicas.items():
            actual[n] = len(names)
        gone, adopted = np.maximum(s.held - actual, 0), np.maximum(actual - s.held, 0)
        if gone.any():  # dead actors, a lost node, blue replicas a hot swap retired: their units are free again
            st.apply(Plan([Decision(Action.SCALE_DOWN, "serving", "replicas gone", _counts(gone))]))
        adopted = np.minimum(adopted, np.maximum(st.free, 0) // self.replica_units)
        if adopted.any():  # a hot swap's green replica: serving now, so it counts
            st.apply(Plan([Decision(Action.SCALE_UP, "serving", "replicas started by a hot swap", _counts(adopted))]))
        for n in self.down:
            st.free[n] = 0

    def _capacity(self, n: int) -> int:
        """Free units of host n as if it just joined: its accelerators less what the state still places there."""
        st, j = self.state, self.state.jobs
        used = int(st.serving["serving"].held[n]) * self.replica_units
        used += sum(nodes.get(n, 0) for nodes in j.nodes)
        used += sum(self.groups[g].spec.accelerators for g, k in st.group_node.items() if k == n)
        return int(st.cluster.per_node) - used

    # ---- decisions → Ray ----

    def _replica_options(self, n: int) -> dict[str, Any]:
        """Ray options that put one serving replica on host n with its accelerators."""
        units = float(self.replica_units)
        opts: dict[str, Any] = {"num_cpus": 0, "resources": {}}
        if self.accel == "CPU":
            opts["num_cpus"] = units
        elif self.accel == "GPU":
            opts["num_gpus"] = units
        else:
            opts["resources"][self.accel] = units
        if self.tagged:
            opts["resources"][HOST_PREFIX + self.hosts[n]] = TAG
        else:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.node_ids[n], soft=False)
        return opts

    def _scale_down(self, n: int, count: int) -> None:
        """Drain and stop `count` replicas on host n: ones taking new sessions, least busy first. Not while a hot
        swap is under way (replicas serve two versions, or one drains): the swap retires blue itself, and its
        green must survive its canary. The next step re-adopts what was not stopped."""
        pool = self.serving.pool.info()
        if len({i.adapter_version for i in pool}) > 1 or any(i.status == "draining" for i in pool):
            log.info("scale-down on host %s waits: a hot swap is under way", self.hosts[n])
            return
        names = set(self.replicas.get(n, []))
        info = sorted((i for i in pool if i.name in names and i.status == "ready" and i.accepting_new_sessions),
                      key=lambda i: i.inflight)
        for i in info[:count]:
            self.serving.stop(i.name)

    def _execute(self, d: Decision) -> None:
        if d.action is Action.SCALE_UP:
            for n, c in d.nodes.items():
                for _ in range(c):
                    self.serving.start(self._replica_options(n), adapter=self.serving.served_adapter())
        elif d.action is Action.SCALE_DOWN:
            for n, c in d.nodes.items():
                self._scale_down(n, c)
        elif d.action is Action.START:
            self._start_gang(d)
        elif d.action in (Action.STOP, Action.SHRINK):
            self._stop_gang(d.target, d.checkpoint)
            if d.action is Action.SHRINK:
                # A shrink restarts the gang at its smaller size from the checkpoint just written.
                j = self.state.jobs
                i = j.idx(d.target)
                kept = {n: c - d.nodes.get(n, 0) for n, c in j.nodes[i].items() if c - d.nodes.get(n, 0) > 0}
                self._start_gang(Decision(Action.START, d.target, d.reason, kept))
        elif d.action is Action.PLACE_GROUP:
            self._place_group(d)
        elif d.action is Action.GROW:
            j = self.state.jobs
            self._stop_gang(d.target, True)
            self._start_gang(Decision(Action.START, d.target, d.reason, dict(j.nodes[j.idx(d.target)])))

    def _start_gang(self, d: Decision) -> None:
        from ray.util.placement_group import placement_group

        # One bundle per accelerator, tagged with the host the policy chose; STRICT_PACK when on one node.
        hosts = [n for n, c in sorted(d.nodes.items()) for _ in range(c)]
        bundles = [{self.accel: 1.0, HOST_PREFIX + self.hosts[n]: TAG} for n in hosts]
        pg = placement_group(bundles, strategy="STRICT_PACK" if len(set(hosts)) == 1 else "PACK")
        gang = RayGang(d.target, self.learners[d.target], self.ckpt_dir / d.target, pg,
                       rank_resources={self.accel: 1.0})
        gang.start()
        self.running[d.target] = _Running(pg, gang.actors, gang)

    def _stop_gang(self, name: str, checkpoint: bool) -> None:
        from ray.util.placement_group import remove_placement_group

        r = self.running.pop(name, None)
        if r is None:
            return
        if r.gang is not None:
            r.gang.stop(checkpoint)
        for a in r.actors:
            self.ray.kill(a)
        remove_placement_group(r.pg)

    def _place_group(self, d: Decision) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        g = self.groups[d.target]
        (n,) = d.nodes
        share = g.spec.accelerators / g.members
        bundles = [{self.accel: share, HOST_PREFIX + self.hosts[n]: TAG / g.members} for _ in range(g.members)]
        pg = placement_group(bundles, strategy="STRICT_PACK")
        self.ray.get(pg.ready(), timeout=60)
        actors = [self.ray.remote(AgentMember).options(
            num_cpus=0, resources={self.accel: share},
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=k)).remote()
            for k in range(g.members)]
        self.running[d.target] = _Running(pg, actors)

    def close(self, keep_serving: bool = False) -> None:
        """Checkpoint learners, then release every actor and placement group this backend made (the serving
        replicas too unless `keep_serving`)."""
        for name in list(self.running):
            self._stop_gang(name, name not in self.groups)
        if not keep_serving:
            self.serving.close()


def _host(node: dict[str, Any]) -> str:
    """A node's host name: its host tag, else its Ray node id (untagged nodes are each their own host)."""
    return _tag(node, HOST_PREFIX) or str(node["NodeID"])


def _counts(per_node: np.ndarray) -> dict[int, int]:
    return {int(n): int(c) for n, c in enumerate(per_node) if c > 0}


def _tag(node: dict[str, Any], prefix: str) -> str:
    for k in node["Resources"]:
        if k.startswith(prefix):
            return str(k[len(prefix):])
    return ""
