"""The Ray backend: the unified policy's decisions as Ray actors and placement groups.

Serving replicas are actors running the embedded engine, registered with the gateway's pool as they start and
removed as they stop or die (ray_serving.py); a learning gang is one placement group pinned to the topology domain
the policy chose (custom resources tag hosts and racks) with one real LoRA trainer rank per bundle, gloo between
them, restarted from its last checkpoint when a rank dies (ray_learning.py); an agent group is a STRICT_PACK
placement group. Ray has no preemption of its own: the policy checkpoints, kills and re-places.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.ray_learning import LearnerSpec, RayGang
from blacksoil.scheduling.backends.ray_serving import EngineSpec, RayReplicas
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import Policy, UnifiedPolicy
from blacksoil.scheduling.state import Action, ClusterState, Decision, Plan
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.workloads import AgentGroup, LearningJob, ServingDeployment
from blacksoil.serving.pool import ReplicaPool

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
                 engine: EngineSpec | None = None):
        """`pool`: the gateway's replica pool the serving actors join; `learners`: what each job trains;
        `ckpt_dir`: where gangs checkpoint (`<ckpt_dir>/<job>`), a path every node sees."""
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
        nodes = sorted((n for n in ray.nodes() if n["Alive"] and n["Resources"].get(accelerator, 0) > 0),
                       key=lambda n: _tag(n, HOST_PREFIX))
        if not nodes:
            raise ConfigError(f"no alive Ray node offers the {accelerator!r} resource; start nodes with --resources")
        self.hosts = [_tag(n, HOST_PREFIX) for n in nodes]
        if not all(self.hosts):
            raise ConfigError(f"every Ray node needs a {HOST_PREFIX}<name> resource tag (e.g. --resources "
                              f"'{{\"{HOST_PREFIX}n0\": 1}}'); got hosts {self.hosts}")
        self.racks = [_tag(n, RACK_PREFIX) or h for n, h in zip(nodes, self.hosts, strict=True)]
        per_node = int(max(n["Resources"][accelerator] for n in nodes))
        cluster = Cluster.from_groups(per_node, self.racks, [_tag(n, POD_PREFIX) or "p0" for n in nodes])
        # Checkpoints are synchronous actor calls: a stop frees its accelerators on the same step.
        jobs = [LearningJob(j.name, j.size, 1e12, j.min_size, j.priority, 1e9, 0.0) for j in jobs]
        deployment = ServingDeployment("serving", 1, self.cfg.slo_max_utilization, min_replicas=1)
        self.groups = {g.spec.name: g for g in groups}
        self.state = ClusterState(cluster, [deployment], jobs, [g.spec for g in groups], restart_s=0.0,
                                  kill_grace_s=0.0, cold_start_s=0.0)
        self.state.keep_log = True
        self.serving = RayReplicas(pool, engine)
        self.replicas: dict[int, list[str]] = {}
        """Gateway replica names of the serving actors on each node (index into self.hosts)."""
        self.running: dict[str, _Running] = {}
        self.t0 = time.monotonic()

    def step(self) -> Plan:
        st = self.state
        st.advance(max(1e-3, time.monotonic() - self.t0 - st.now))
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

    # ---- decisions → Ray ----

    def _execute(self, d: Decision) -> None:
        if d.action is Action.SCALE_UP:
            for n, c in d.nodes.items():
                for _ in range(c):
                    opts = {"num_cpus": 0, "resources": {self.accel: 1, HOST_PREFIX + self.hosts[n]: TAG}}
                    self.replicas.setdefault(n, []).append(self.serving.start(opts))
        elif d.action is Action.SCALE_DOWN:
            for n, c in d.nodes.items():
                for _ in range(c):
                    self.serving.stop(self.replicas[n].pop())
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

    def close(self) -> None:
        """Checkpoint learners, then release every actor and placement group this backend made."""
        for name in list(self.running):
            self._stop_gang(name, name not in self.groups)
        self.serving.close()
        self.replicas.clear()


def _tag(node: dict[str, Any], prefix: str) -> str:
    for k in node["Resources"]:
        if k.startswith(prefix):
            return str(k[len(prefix):])
    return ""
