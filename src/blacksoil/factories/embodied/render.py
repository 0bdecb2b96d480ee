"""Pictures of the cell: each template's start and goal state (after the oracle's plan), rendered offscreen.

`MUJOCO_GL=egl python -m blacksoil.factories.embodied.render docs/img` writes docs/img/embodied_<template>.png
(needs an EGL or OSMesa driver: Debian libegl1 + libegl-mesa0, or libosmesa6 with MUJOCO_GL=osmesa).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mujoco
import numpy as np

from blacksoil.agentscore.agents import OracleAgent, ToolBox, Trajectory
from blacksoil.agentscore.tasks import Task, list_tasks

from .env import EmbodiedEnv
from .world import World

WIDTH, HEIGHT = 400, 300


def frame(world: World, renderer: mujoco.Renderer) -> np.ndarray:
    """One RGB picture from the overview camera (the mocap's guide geoms hidden)."""
    m = world.model
    mocap = m.body("robot0:mocap").id
    m.geom_rgba[m.geom_bodyid == mocap, 3] = 0.0
    renderer.update_scene(world.data, camera="overview")
    return np.array(renderer.render())


def start_and_goal(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The task's start, and the state the oracle's plan leaves (after the checker's 2-s settle)."""
    env = EmbodiedEnv(task.initial.seed, dict(task.initial.overrides))
    renderer = mujoco.Renderer(env.world.model, HEIGHT, WIDTH)
    try:
        start = frame(env.world, renderer)
        OracleAgent().run(task, env, ToolBox(env, task.tools, Trajectory()))
        env.world.wait(1.0)
        goal = frame(env.world, renderer)
    finally:
        renderer.close()
    return start, goal


def save(task: Task, folder: Path) -> Path:
    """docs/img/embodied_<category>.png: start | goal side by side, titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, goal = start_and_goal(task)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for ax, img, title in zip(axes, (start, goal), ("start", "goal (oracle)"), strict=True):
        ax.imshow(img)
        ax.set_title(f"{task.category}: {title}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = folder / f"embodied_{task.category}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    """Render the first dev task of every template into the folder given (default docs/img)."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for task in list_tasks("embodied", "dev"):
        if task.category not in seen:
            seen.add(task.category)
            print(save(task, folder))


if __name__ == "__main__":
    main()
