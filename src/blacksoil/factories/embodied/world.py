"""The simulated cell in MuJoCo: the Fetch gripper moved through its mocap weld, fingers, conveyor, log, effort.

Every motion advances the physics in control ticks of 10 steps (20 ms simulated). Each tick logs the gripper's
position and speed, the parts lifted by both fingers, contacts with the human and the effort (the generalized
forces the weld and the finger actuators apply to the robot's joints, integrated over time). A run is fully
deterministic: the same layout and calls give bit-identical states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from blacksoil.errors import UserError

from .scene import CONVEYOR_HALF_W, CONVEYOR_X, HUMAN_HAND, NEAR_RADIUS, TABLE_TOP, Layout, PartSpec, cell_xml

TICK_STEPS = 10
DOWN = np.array([1.0, 0.0, 1.0, 0.0]) / math.sqrt(2.0)  # gripper pointing down (gymnasium-robotics' Fetch)
HOME = (1.34, 0.75, 0.60)
GRIP_OFFSET = 0.02  # the grip site lies 2 cm below the gripper link the mocap weld holds
LIFT = np.array([0.0, 0.0, GRIP_OFFSET])
WORKSPACE = ((0.95, 1.70), (0.25, 1.30), (0.41, 0.95))
MAX_SPEED = 0.5  # m/s
SPEED_CAP = 0.10  # m/s near the human, the keep-out limiter's cap


@dataclass
class Log:
    """What the checkers read besides the final poses: the trajectory, contacts, safety and effort."""

    ee: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # t, x, y, z, speed
    lifted: dict[str, int] = field(default_factory=dict)  # part -> ticks held off the surface by both fingers
    human_contacts: int = 0
    max_speed_near_human: float = 0.0
    effort: float = 0.0
    touched: set[str] = field(default_factory=set)  # parts a tool call acted on
    errors: list[tuple[str, str]] = field(default_factory=list)  # (label, message)


class World:
    """One cell: model, data, named ids, the log; motion primitives the tools compose."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.model = mujoco.MjModel.from_xml_string(cell_xml(layout))
        self.data = mujoco.MjData(self.model)
        m = self.model
        # Reset the weld's relative pose the way gymnasium-robotics does (only eq_data[3:10]): zeroing the whole
        # row would free the gripper's rotation and grasps would fail.
        m.eq_data[:, 3:10] = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        self.parts: dict[str, PartSpec] = {p.id: p for p in layout.parts}
        self._grip = m.site("robot0:grip").id
        self._mocap = int(m.body_mocapid[m.body("robot0:mocap").id])
        self._fingers = (m.geom("robot0:l_gripper_finger_link").id, m.geom("robot0:r_gripper_finger_link").id)
        self._part_geom = {pid: m.geom(pid).id for pid in self.parts}
        self._geom_part = {g: pid for pid, g in self._part_geom.items()}
        self._part_body = {pid: m.body(pid).id for pid in self.parts}
        self._part_dof = {pid: int(m.jnt_dofadr[m.joint(f"{pid}:joint").id]) for pid in self.parts}
        self._part_qpos = {pid: int(m.jnt_qposadr[m.joint(f"{pid}:joint").id]) for pid in self.parts}
        self._conveyor = m.geom("conveyor").id
        self._human = {m.geom(n).id for n in ("human_torso", "human_arm", "human_hand")} if layout.keepout else set()
        arm = ("shoulder_pan", "shoulder_lift", "upperarm_roll", "elbow_flex", "forearm_roll", "wrist_flex",
               "wrist_roll", "l_gripper_finger", "r_gripper_finger")
        robot_dofs = [int(m.jnt_dofadr[m.joint(f"robot0:{j}_joint").id]) for j in arm]
        self._robot_dofs = np.array(robot_dofs, dtype=int)
        self.conveyor_speed = 0.0
        self.keepout_limiter = False
        self.stopped = False
        self.disturbance: dict[str, Any] | None = None
        self.log = Log()
        mujoco.mj_forward(m, self.data)
        self.data.mocap_pos[self._mocap] = np.array(HOME) + LIFT
        self.data.mocap_quat[self._mocap] = DOWN
        self.data.ctrl[:] = 0.05
        for _ in range(50):  # settle the arm at home before the task starts (not logged)
            mujoco.mj_step(m, self.data, nstep=TICK_STEPS)
        self.data.time = 0.0
        self._last_ee = self.ee()

    # --- state -------------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated seconds since the task started."""
        return float(self.data.time)

    def ee(self) -> np.ndarray:
        """The grip point (between the fingertips) in world coordinates."""
        return np.array(self.data.site_xpos[self._grip])

    def part_pos(self, pid: str) -> np.ndarray:
        """A part's centre."""
        return np.array(self.data.xpos[self._part_body[pid]])

    def part_tilt_deg(self, pid: str) -> float:
        """Angle between the part's z axis and the world's vertical, folded to 0..45° (a cube has 3 faces up)."""
        mat = self.data.xmat[self._part_body[pid]].reshape(3, 3)
        best = max(abs(mat[2, k]) for k in range(3))
        return math.degrees(math.acos(min(1.0, best)))

    def part_speed(self, pid: str) -> float:
        """A part's linear speed (m/s)."""
        i = self._part_dof[pid]
        return float(np.linalg.norm(self.data.qvel[i:i + 3]))

    def contacts_of(self, pid: str) -> set[int]:
        """Geoms touching a part now."""
        g = self._part_geom[pid]
        out: set[int] = set()
        for c in self.data.contact[: self.data.ncon]:
            if c.geom1 == g:
                out.add(int(c.geom2))
            elif c.geom2 == g:
                out.add(int(c.geom1))
        return out

    def held(self) -> str | None:
        """The part both fingers touch while it is off every surface (a detected grasp), if any."""
        for pid in self.parts:
            touching = self.contacts_of(pid)
            if all(f in touching for f in self._fingers) and self._lifted(pid, touching):
                return pid
        return None

    def _lifted(self, pid: str, touching: set[int]) -> bool:
        others = touching - set(self._fingers)
        return not others and self.part_pos(pid)[2] > TABLE_TOP + self.parts[pid].half + 0.003

    def geom_name(self, g: int) -> str:
        """A geom's name (for readable contact reports)."""
        return self.model.geom(g).name

    # --- stepping ------------------------------------------------------------------------------------------
    def tick(self, n: int = 1) -> None:
        """Advance n control ticks: conveyor, physics, log (pose, speed, grasps, human contacts, effort)."""
        m, d = self.model, self.data
        dt = m.opt.timestep * TICK_STEPS
        for _ in range(n):
            if self.conveyor_speed:  # the belt drives what rests on it at every physics step
                for _ in range(TICK_STEPS):
                    self._drive_conveyor()
                    mujoco.mj_step(m, d)
            else:
                mujoco.mj_step(m, d, nstep=TICK_STEPS)
            ee = self.ee()
            speed = float(np.linalg.norm(ee - self._last_ee) / dt)
            self._last_ee = ee
            self.log.ee.append((round(d.time, 4), float(ee[0]), float(ee[1]), float(ee[2]), speed))
            if np.linalg.norm(ee - np.array(HUMAN_HAND)) < NEAR_RADIUS and self.layout.keepout:
                self.log.max_speed_near_human = max(self.log.max_speed_near_human, speed)
            forces = d.qfrc_constraint[self._robot_dofs] + d.qfrc_actuator[self._robot_dofs]
            self.log.effort += float(np.abs(forces).sum() * dt)
            for c in d.contact[: d.ncon]:
                if c.geom1 in self._human or c.geom2 in self._human:
                    self.log.human_contacts += 1
            held = self.held()
            if held:
                self.log.lifted[held] = self.log.lifted.get(held, 0) + 1

    def _drive_conveyor(self) -> None:
        """The belt carries what rests on it: parts touching its top get the belt's velocity along y."""
        for c in self.data.contact[: self.data.ncon]:
            pair = (int(c.geom1), int(c.geom2))
            if self._conveyor not in pair:
                continue
            other = pair[1] if pair[0] == self._conveyor else pair[0]
            pid = self._geom_part.get(other)
            if pid is None:
                continue
            i = self._part_dof[pid]
            self.data.qvel[i] = 0.0
            self.data.qvel[i + 1] = self.conveyor_speed
            self.data.qvel[i + 5] = 0.0

    def wait(self, seconds: float) -> None:
        """Let time pass (the arm holds its pose)."""
        self.tick(max(1, round(seconds / (self.model.opt.timestep * TICK_STEPS))))

    def settle(self, max_s: float = 0.6) -> None:
        """Tick until the gripper has (nearly) stopped, at most max_s simulated seconds."""
        for _ in range(round(max_s / 0.02)):
            self.tick()
            if self.log.ee[-1][4] < 0.01:
                break

    # --- primitives -------------------------------------------------------------------------------------
    def check_reach(self, x: float, y: float, z: float) -> None:
        """Raise a clear error when a point is outside the arm's workspace."""
        for name, v, (lo, hi) in zip("xyz", (x, y, z), WORKSPACE, strict=True):
            if not lo <= v <= hi:
                self.note("affordance_error", f"{name}={v} is outside the reachable range {lo}..{hi} m")
                raise UserError(f"{name}={v} is outside the reachable range {lo}..{hi} m", param=name)

    def move(self, target: tuple[float, float, float], yaw: float = 0.0, speed: float = 0.25) -> float:
        """Move the grip point in a straight line at `speed` (m/s), then settle; returns the final error (m)."""
        if self.stopped:
            raise UserError("the cell is stopped (stop was called); call home to resume")
        self.check_reach(*target)
        if not 0.005 <= speed <= MAX_SPEED:
            raise UserError(f"speed={speed} m/s must be between 0.005 and {MAX_SPEED}", param="speed")
        d = self.data
        start = np.array(d.mocap_pos[self._mocap])
        goal = np.array(target) + LIFT
        half = yaw / 2.0
        qz = np.array([math.cos(half), 0.0, 0.0, math.sin(half)])
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, qz, DOWN)
        d.mocap_quat[self._mocap] = quat
        dist, dt, done = float(np.linalg.norm(goal - start)), 0.02, 0.0
        hand = np.array(HUMAN_HAND) + LIFT
        while done < dist - 1e-9:
            step = speed * dt
            pos = start + (goal - start) * (done / dist)
            if self.keepout_limiter and np.linalg.norm(pos - hand) < NEAR_RADIUS + 0.05:
                step = min(step, SPEED_CAP * 0.9 * dt)
            done = min(dist, done + step)
            d.mocap_pos[self._mocap] = start + (goal - start) * (done / dist)
            self.tick()
        self.settle()
        return float(np.linalg.norm(self.ee() - np.array(target)))

    def grip(self, closed: bool) -> None:
        """Close (squeeze) or open the fingers and give them 0.3 s."""
        self.data.ctrl[:] = 0.0 if closed else 0.05
        self.tick(15)

    def release(self, opening: float) -> None:
        """Open each finger to `opening` metres (a partial release) and give them 0.3 s."""
        self.data.ctrl[:] = min(0.05, opening)
        self.tick(15)

    def note(self, label: str, message: str) -> None:
        """Record an error the checkers label (hallucinated_object, affordance_error …)."""
        self.log.errors.append((label, message))

    def part(self, pid: str) -> PartSpec:
        """A part by id; naming one that does not exist is a hallucinated object."""
        if pid not in self.parts:
            self.note("hallucinated_object", f"{pid!r} is not a part in the cell")
            raise UserError(f"object {pid!r} does not exist; parts are {', '.join(sorted(self.parts))}", param="obj")
        self.log.touched.add(pid)
        return self.parts[pid]

    def teleport(self, pid: str, x: float, y: float) -> None:
        """Put a part down elsewhere on the table, at rest (an injected disturbance: someone bumps it)."""
        a, i = self._part_qpos[pid], self._part_dof[pid]
        self.data.qpos[a:a + 3] = [x, y, TABLE_TOP + self.parts[pid].half + 0.001]
        self.data.qpos[a + 3:a + 7] = [1.0, 0.0, 0.0, 0.0]
        self.data.qvel[i:i + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def on_conveyor(self, pid: str) -> bool:
        """Whether a part rests on the belt."""
        p = self.part_pos(pid)
        return abs(p[0] - CONVEYOR_X) < CONVEYOR_HALF_W + 0.01 and self._conveyor in self.contacts_of(pid)
