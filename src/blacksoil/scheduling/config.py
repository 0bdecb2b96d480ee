"""Settings of the scheduling pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.scheduling).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt, model_validator

from blacksoil.configbase import ComponentConfig, PositiveFraction

__all__ = ["SchedulingConfig"]


class SchedulingConfig(ComponentConfig):
    """Settings of the unified scheduler, its simulator and its backends."""

    backend: Literal["local", "ray", "kubernetes"] = "local"
    """Which backend runs the workloads: local processes, a Ray cluster or the Kubernetes operator."""
    ray_address: str = "auto"
    """Ray cluster to join with backend = ray: `auto` (the cluster this machine belongs to) or HOST:PORT of its head."""
    ray_shared_dir: str | None = None
    """A folder every Ray node mounts at this same path: served adapters are copied there for the replica actors
    (None = the adapters' own paths under the home: one machine, or a home on shared storage)."""
    accelerators_per_node: PositiveInt = 8
    """Accelerators per node (count); nodes are the fast-interconnect domain."""
    nodes_per_rack: PositiveInt = 16
    """Nodes behind one rack/leaf switch (count); the second topology level."""
    racks_per_pod: PositiveInt = 8
    """Racks per pod/spine (count); the third topology level."""
    step_s: PositiveFloat = 30.0
    """Length of one scheduling step of the simulator and the control loops (seconds)."""
    local_step_s: PositiveFloat = 2.0
    """Time between two control steps of the local backend under `blacksoil up --learner` (seconds)."""
    slo_max_utilization: PositiveFraction = 0.8
    """Highest serving-replica utilization at which p99 latency still meets the SLO (fraction, 0-1).

    M/M/1 p99 sojourn = 4.6·S/(1-ρ): ρ = 0.8 holds an SLO of 23× the mean service time."""
    replica_accelerators: PositiveInt = 1
    """Accelerators per serving replica (count)."""
    replica_cold_start_s: float = 60.0
    """Time from placing a serving replica to it taking traffic: model load and warm-up (seconds)."""
    forecast_alpha: PositiveFraction = 0.5
    """Holt level smoothing of the serving demand forecast (0-1)."""
    forecast_beta: PositiveFraction = 0.2
    """Holt trend smoothing of the serving demand forecast (0-1)."""
    headroom_sigmas: float = 1.0
    """Serving headroom above the forecast, in standard deviations of the recent forecast error.

    1.0 is the smallest of {0, 0.5, 1, 1.5, 2, 3} that held SLO attainment >= 0.999 on the simulator's trace."""
    min_headroom: float = 0.05
    """Smallest serving headroom above the forecast (fraction of the forecast)."""
    lend_horizon_s: float = 300.0
    """Serving growth the forecast expects within this time is not lent to learning (seconds)."""
    grow_cooldown_s: float = 1800.0
    """An elastic job grows only this long after its last start or resize: damps grow/shrink flapping (seconds)."""
    hpa_target_utilization: PositiveFraction = 0.72
    """Target utilization of the reactive (HPA-style) autoscaler the baselines use (fraction, 0-1).

    0.72 is the largest of {0.6, 0.65, 0.7, 0.72, 0.74} that held SLO attainment >= 0.999 for every baseline."""
    hpa_scale_down_window_s: float = 300.0
    """HPA scale-down stabilization window: the baselines scale down to the highest target seen in it (seconds)."""
    restart_s: float = 120.0
    """Time a learning job needs to (re)start or resize before it makes progress again (seconds)."""
    kill_grace_s: float = 30.0
    """Grace period of an eviction without a coordinated checkpoint (Kubernetes default, seconds)."""
    serving_peak_fraction: float = 0.6
    """Simulator: accelerators the serving peak needs at the SLO utilization (fraction of the cluster)."""
    learning_load: float = 1.2
    """Simulator: learning work offered over the horizon (multiple of the cluster's accelerator-hours)."""
    serving_deployments: PositiveInt = 8
    """Simulator: serving deployments, each replaying the Azure trace with its own offset and diurnal phase."""
    seed: int = 0
    """Simulator: random seed (trace offsets, job sampling); same seed, same result."""

    @model_validator(mode="after")
    def _replica_fits_node(self) -> SchedulingConfig:
        if self.replica_accelerators > self.accelerators_per_node:
            raise ValueError(
                f"replica_accelerators={self.replica_accelerators} exceeds accelerators_per_node="
                f"{self.accelerators_per_node}; a replica must fit on one node"
            )
        return self
