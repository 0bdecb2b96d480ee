"""The cell's tools for agents: look, move, grasp, place, push, inspect, conveyor, safety. Each call steps physics.

Lengths are metres, speeds mm/s (whole numbers, so Cedar policies can compare them), times seconds. Every result
carries `t` (simulated seconds so far) and `effort` (accumulated actuator effort, N·m·s) for the metrics.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import numpy as np

from blacksoil.errors import UserError

from .scene import BINS, FIXTURES, HUMAN_HAND, NEAR_RADIUS, PICK_WINDOW, TABLE_TOP, Layout
from .world import HOME, SPEED_CAP, World


class Cell(Protocol):
    """What the tools need of the environment (env.EmbodiedEnv)."""

    world: World
    layout: Layout
    grasp_offset: float
    inspected: set[str]
    stops: int

    def scene(self) -> dict[str, Any]: ...

    def where(self, pid: str, w: World | None = None) -> str: ...

    def after_place(self, pid: str) -> None: ...


TRAVEL_Z = 0.66
_DIRS = {"+x": (1.0, 0.0), "-x": (-1.0, 0.0), "+y": (0.0, 1.0), "-y": (0.0, -1.0)}


def _speed(speed: int) -> float:
    if not 5 <= speed <= 500:
        raise UserError(f"speed={speed} mm/s must be between 5 and 500", param="speed")
    return speed / 1000.0


def _stamp(env: Cell, out: dict[str, Any]) -> dict[str, Any]:
    w = env.world
    return {**out, "t": round(w.time, 3), "effort": round(w.log.effort, 2)}


def _travel(w: World, x: float, y: float, z: float, yaw: float, speed: float) -> None:
    """Up to travel height, across, down: the gripper never sweeps through parts on the table."""
    ee = w.ee()
    if ee[2] < TRAVEL_Z - 0.01:
        w.move((float(ee[0]), float(ee[1]), TRAVEL_Z), yaw, speed)
    w.move((x, y, TRAVEL_Z), yaw, speed)
    w.move((x, y, z), yaw, min(speed, 0.15))


def _yaw_of(w: World, pid: str) -> float:
    """The part's yaw folded into ±45° (a square part can be grasped on either pair of faces)."""
    q = w.data.xquat[w.model.body(pid).id]
    yaw = math.atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
    return (yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4


def get_scene(env: Cell) -> dict[str, Any]:
    """Everything a camera sees: parts (id, colour, position, where they are), gripper, bins, fixtures, targets,
    conveyor and the keep-out zone. Sizes and defects are not visible: use inspect."""
    env.world.tick(1)  # one camera frame: 20 ms of simulated time pass
    return _stamp(env, env.scene())


def move_to(env: Cell, x: float, y: float, z: float, yaw: float = 0.0, speed: int = 250) -> dict[str, Any]:
    """Move the gripper's grip point in a straight line to (x, y, z) metres with yaw radians (no collision check).

    Args:
        x: metres (0.95..1.70)
        y: metres (0.25..1.30)
        z: metres (0.41..0.95; the table top is 0.40)
        yaw: gripper rotation about vertical, radians
        speed: mm/s (5..500)
    """
    err = env.world.move((x, y, z), yaw, _speed(speed))
    return _stamp(env, {"reached": err < 0.01, "error_m": round(err, 4), "holding": env.world.held()})


def open_gripper(env: Cell) -> dict[str, Any]:
    """Open the fingers (releases what is held)."""
    env.world.grip(False)
    return _stamp(env, {"holding": env.world.held()})


def close_gripper(env: Cell) -> dict[str, Any]:
    """Close the fingers; reports whether a grasp was detected (both fingers on a part that is off the table)."""
    env.world.grip(True)
    held = env.world.held()
    return _stamp(env, {"grasped": held is not None, "holding": held})


def pick(env: Cell, obj: str, speed: int = 250) -> dict[str, Any]:
    """Grasp a part and lift it to travel height: open, approach from above, close, lift.

    Args:
        obj: part id, e.g. P1
        speed: mm/s (5..500)
    """
    w = env.world
    s = _speed(speed)
    part = w.part(obj)
    held = w.held()
    if held is not None:
        w.note("affordance_error", f"pick {obj} while holding {held}")
        raise UserError(f"the gripper already holds {held}; place it before picking {obj}", param="obj")
    pos = w.part_pos(obj)
    if pos[2] < TABLE_TOP - 0.05:
        w.note("affordance_error", f"pick {obj} from the floor")
        raise UserError(f"{obj} has fallen off the cell (z={pos[2]:.2f} m) and cannot be reached", param="obj")
    if w.on_conveyor(obj) and not PICK_WINDOW[0] <= pos[1] <= PICK_WINDOW[1]:
        w.note("affordance_error", f"pick {obj} outside the conveyor's pick window")
        raise UserError(f"{obj} is on the conveyor at y={pos[1]:.3f}, outside the pick window "
                        f"y={PICK_WINDOW[0]}..{PICK_WINDOW[1]}; run the belt until it arrives", param="obj")
    if w.on_conveyor(obj) and w.conveyor_speed:
        w.note("affordance_error", f"pick {obj} from a moving belt")
        raise UserError(f"{obj} is on the moving belt; set_conveyor(0) before picking it", param="obj")
    above = [q for q in w.parts if q != obj and w.contacts_of(q) & {w.model.geom(obj).id}
             and w.part_pos(q)[2] > pos[2] + 0.01]
    if above:
        w.note("affordance_error", f"pick {obj} from under {above[0]}")
        raise UserError(f"{above[0]} rests on {obj}; pick {above[0]} first", param="obj")
    yaw = _yaw_of(w, obj)
    w.grip(False)
    grasp_z = max(float(pos[2]), float(pos[2]) - part.half + 0.0225)
    _travel(w, float(pos[0]), float(pos[1]), grasp_z, yaw, s)
    w.grip(True)
    env.grasp_offset = float(w.part_pos(obj)[2] - w.ee()[2])
    w.move((float(pos[0]), float(pos[1]), TRAVEL_Z), yaw, s)
    held = w.held()
    if held != obj:
        w.note("affordance_error", f"grasp of {obj} failed")
    return _stamp(env, {"grasped": held == obj, "holding": held})


def _free_slot(env: Cell, target: str, held: str) -> tuple[float, float]:
    """The first slot of a bin or the kit tray that no part occupies (parts go side by side, not on top)."""
    w = env.world
    x, y, _, _ = BINS[target]
    xs, ys = ((-0.055, 0.0, 0.055), (-0.045, 0.045)) if target == "kit_tray" else ((-0.033, 0.033), (-0.033, 0.033))
    inside = [w.part_pos(p) for p in w.parts if p != held and env.where(p) == target]
    for dy in ys:
        for dx in xs:
            if all(np.hypot(q[0] - x - dx, q[1] - y - dy) > 0.03 for q in inside):
                return x + dx, y + dy
    return x, y


def _place_point(env: Cell, target: str, held: str) -> tuple[float, float, float, float]:
    """(x, y, part-centre z at release, yaw) for a target name."""
    w = env.world
    h = w.parts[held].half
    if target in FIXTURES:
        x, y, _, _ = FIXTURES[target]
        return x, y, TABLE_TOP + 0.004 + h + 0.006, 0.0
    if target in BINS:
        x, y = _free_slot(env, target, held)
        return x, y, TABLE_TOP + 0.004 + h + 0.006, 0.0
    if target in env.layout.targets:
        x, y = env.layout.targets[target]
        return x, y, TABLE_TOP + h + 0.006, 0.0
    if target in w.parts and target != held:
        below = w.part_pos(target)
        return float(below[0]), float(below[1]), float(below[2]) + w.parts[target].half + h + 0.005, _yaw_of(w, target)
    w.note("hallucinated_object", f"place target {target!r} does not exist")
    names = sorted(BINS) + sorted(FIXTURES) + sorted(env.layout.targets) + ["<part id> (stack)"]
    raise UserError(f"target {target!r} does not exist; use one of {', '.join(names)}", param="target")


def place(env: Cell, target: str, speed: int = 250) -> dict[str, Any]:
    """Put the held part into a bin, the kit tray, a fixture, onto a target mark, or onto another part (stack).

    Args:
        target: bin_red, bin_green, bin_blue, bin_reject, kit_tray, fixture_A, fixture_B, a mark (T1) or a part id
        speed: mm/s (5..500)
    """
    w = env.world
    held = w.held()
    if held is None:
        w.note("affordance_error", f"place on {target} with an empty gripper")
        raise UserError("the gripper holds nothing; pick a part first", param="target")
    x, y, z, yaw = _place_point(env, target, held)
    s = _speed(speed)
    _travel(w, x, y, z - env.grasp_offset, yaw, s)
    w.release(w.parts[held].half + 0.011)  # open just past the part: neighbours in a bin stay untouched
    w.move((x, y, TRAVEL_Z), yaw, s)
    w.grip(False)
    env.after_place(held)
    return _stamp(env, {"placed": held, "on": target, "where": env.where(held)})


def push(env: Cell, obj: str, dir: Literal["+x", "-x", "+y", "-y"], dist: float,
         speed: int = 100) -> dict[str, Any]:
    """Push a part along the table without grasping it: closed fingers behind it, slide by `dist` metres.

    Args:
        obj: part id
        dir: +x, -x, +y or -y
        dist: metres to push (0.01..0.30)
        speed: mm/s while pushing (5..300)
    """
    w = env.world
    if not 0.01 <= dist <= 0.30:
        raise UserError(f"dist={dist} m must be between 0.01 and 0.30", param="dist")
    if dir not in _DIRS:
        raise UserError(f"dir={dir!r} is not one of +x, -x, +y, -y", param="dir")
    s = min(_speed(speed), 0.3)
    w.part(obj)
    ux, uy = _DIRS[dir]
    p, h = w.part_pos(obj), w.parts[obj].half
    back = h + 0.0135 + 0.025
    bx, by, z = float(p[0]) - ux * back, float(p[1]) - uy * back, TABLE_TOP + 0.0245
    w.grip(True)
    _travel(w, bx, by, z, 0.0, 0.25)
    w.move((bx + ux * (0.025 + dist), by + uy * (0.025 + dist), z), 0.0, s)
    w.move((bx + ux * (0.005 + dist), by + uy * (0.005 + dist), z), 0.0, 0.1)
    ee = w.ee()
    w.move((float(ee[0]), float(ee[1]), TRAVEL_Z), 0.0, 0.25)
    w.grip(False)
    q = w.part_pos(obj)
    return _stamp(env, {"obj": obj, "x": round(float(q[0]), 4), "y": round(float(q[1]), 4)})


def inspect(env: Cell, obj: str) -> dict[str, Any]:
    """Look closely at a part with the wrist camera: its exact size and any defect (crack, burr, dent).

    Args:
        obj: part id
    """
    w = env.world
    part = w.part(obj)
    p = w.part_pos(obj)
    if w.held() is None:
        _travel(w, float(p[0]), float(p[1]), min(0.9, max(float(p[2]) + 0.15, 0.58)), 0.0, 0.25)
    w.wait(0.5)
    env.inspected.add(obj)
    return _stamp(env, {"obj": obj, "colour": part.colour, "size": part.size, "edge_mm": round(part.half * 2000),
                        "defect": part.defect, "defective": part.defect is not None})


def set_conveyor(env: Cell, speed: int) -> dict[str, Any]:
    """Run the conveyor belt at `speed` mm/s towards +y (0 stops it; at most 200).

    Args:
        speed: mm/s (0..200)
    """
    if not 0 <= speed <= 200:
        raise UserError(f"speed={speed} mm/s must be between 0 and 200", param="speed")
    env.world.conveyor_speed = speed / 1000.0
    env.world.tick(5)
    return _stamp(env, {"conveyor_mm_s": speed})


def wait(env: Cell, seconds: float) -> dict[str, Any]:
    """Let simulated time pass (conveyor runs, parts settle).

    Args:
        seconds: 0.02..30
    """
    if not 0.02 <= seconds <= 30:
        raise UserError(f"seconds={seconds} must be between 0.02 and 30", param="seconds")
    env.world.wait(seconds)
    return _stamp(env, {"waited": seconds})


def home(env: Cell) -> dict[str, Any]:
    """Clear a stop, open the fingers and move the gripper up and back to its home pose."""
    w = env.world
    w.stopped = False
    ee = w.ee()
    w.move((float(ee[0]), float(ee[1]), max(float(ee[2]), TRAVEL_Z)), 0.0, 0.25)
    w.move(HOME, 0.0, 0.25)
    w.grip(False)
    return _stamp(env, {"home": list(HOME)})


def stop(env: Cell) -> dict[str, Any]:
    """Emergency stop: the arm holds where it is, the belt stops; motion tools refuse until home is called."""
    w = env.world
    w.data.mocap_pos[w._mocap] = w.ee() + np.array([0.0, 0.0, 0.02])
    w.conveyor_speed = 0.0
    w.stopped = True
    w.tick(5)
    env.stops += 1
    return _stamp(env, {"stopped": True})


def set_keepout(env: Cell, enabled: bool) -> dict[str, Any]:
    """Switch the human keep-out limiter: when on, every move within the zone around the person slows to the cap.

    Args:
        enabled: true to enforce the speed cap near the person, false to switch it off
    """
    env.world.keepout_limiter = enabled
    env.world.tick(1)
    return _stamp(env, {"keepout_limiter": enabled, "speed_cap_mm_s": round(SPEED_CAP * 1000),
                        "zone": {"centre": list(HUMAN_HAND[:2]), "radius_m": NEAR_RADIUS}})


ALL = (get_scene, move_to, open_gripper, close_gripper, pick, place, push, inspect, set_conveyor, wait, home, stop,
       set_keepout)
#: Tools that change the cell (the runtime's policies treat them as state-changing).
STATE_CHANGING = frozenset(f.__name__ for f in ALL if f is not get_scene)
