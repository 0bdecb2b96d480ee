"""The robot work cell as MJCF: table, conveyor, bins, fixtures, a kit tray, a "human" with a keep-out zone, parts.

The furniture is the same in every task (so pictures and policies agree); a `Layout` says which parts lie where,
their colour, size, mass and hidden defect, and where push targets are. The Fetch arm (vendored from
gymnasium-robotics, MIT; see assets/fetch/ATTRIBUTION.md) stands at the table's near edge and moves through a mocap
weld on its gripper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError

ASSETS = Path(__file__).parent / "assets" / "fetch"
TABLE_TOP = 0.40
#: Part edge half-lengths (m) by size class.
SIZES: dict[str, float] = {"small": 0.02, "medium": 0.025, "large": 0.03}
COLOURS: dict[str, str] = {"red": "0.85 0.15 0.12 1", "green": "0.15 0.7 0.2 1", "blue": "0.15 0.3 0.85 1",
                           "yellow": "0.95 0.8 0.1 1"}
DEFECTS = ("crack", "burr", "dent")
#: Containers: name -> (centre x, centre y, inner half-width, wall height).
BINS: dict[str, tuple[float, float, float, float]] = {
    "bin_red": (1.12, 0.42, 0.065, 0.05), "bin_green": (1.12, 0.60, 0.065, 0.05),
    "bin_blue": (1.12, 0.78, 0.065, 0.05), "bin_reject": (1.12, 0.96, 0.065, 0.05),
    "kit_tray": (1.27, 0.40, 0.09, 0.025),
}
#: Fixtures (pockets a part must sit in): name -> (x, y, inner half-width, wall height).
FIXTURES: dict[str, tuple[float, float, float, float]] = {
    "fixture_A": (1.27, 0.62, 0.036, 0.012), "fixture_B": (1.27, 0.86, 0.036, 0.012),
}
CONVEYOR_X, CONVEYOR_Y0, CONVEYOR_Y1, CONVEYOR_HALF_W, CONVEYOR_TOP = 1.55, 0.30, 1.28, 0.05, 0.42
#: Where the conveyor's parts can be picked (y range) and beyond which a part is missed (falls off the end).
PICK_WINDOW = (0.70, 0.90)
CONVEYOR_END = CONVEYOR_Y1
#: The human's hand (the closest point of the keep-out body) and the keep-out radii.
HUMAN_HAND = (1.36, 1.12, 0.47)
NEAR_RADIUS = 0.22


@dataclass(frozen=True)
class PartSpec:
    """One loose part: id, colour, size class, position on the table (or conveyor), yaw, mass, hidden defect."""

    id: str
    colour: str
    size: str
    x: float
    y: float
    yaw: float = 0.0
    mass: float = 0.3
    defect: str | None = None
    on: str = "table"  # table | conveyor | <part id> (stacked at start)

    @property
    def half(self) -> float:
        """Half edge length (m)."""
        return SIZES[self.size]

    def check(self) -> None:
        """Raise ConfigError naming the bad field."""
        if self.colour not in COLOURS:
            raise ConfigError(f"part {self.id}: colour={self.colour!r} is unknown; use one of {', '.join(COLOURS)}")
        if self.size not in SIZES:
            raise ConfigError(f"part {self.id}: size={self.size!r} is unknown; use one of {', '.join(SIZES)}")
        if self.defect is not None and self.defect not in DEFECTS:
            raise ConfigError(f"part {self.id}: defect={self.defect!r} is unknown; use one of {', '.join(DEFECTS)}")
        if not (0.95 <= self.x <= 1.65 and 0.30 <= self.y <= 1.25):
            raise ConfigError(f"part {self.id}: position ({self.x}, {self.y}) is off the table")


@dataclass(frozen=True)
class Layout:
    """What varies between tasks: the parts, push targets and the conveyor's initial speed."""

    parts: tuple[PartSpec, ...]
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    keepout: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        """A layout from a task's `initial.overrides` (parts: [{id, colour, size, x, y, ...}], targets: {...})."""
        raw = data.get("parts")
        if not isinstance(raw, list) or not raw:
            raise ConfigError("overrides.parts must be a non-empty list of {id, colour, size, x, y}")
        try:
            parts = tuple(PartSpec(**p) for p in raw)
        except TypeError as e:
            raise ConfigError(f"overrides.parts: {e}") from None
        for p in parts:
            p.check()
        ids = [p.id for p in parts]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"overrides.parts: duplicate part ids in {ids}")
        targets = {str(k): (float(v[0]), float(v[1])) for k, v in dict(data.get("targets", {})).items()}
        return cls(parts, targets, bool(data.get("keepout", True)))


def _box(name: str, pos: tuple[float, ...], size: tuple[float, ...], rgba: str, extra: str = "") -> str:
    p = " ".join(f"{v:.4f}" for v in pos)
    s = " ".join(f"{v:.4f}" for v in size)
    return f'<geom name="{name}" type="box" pos="{p}" size="{s}" rgba="{rgba}" {extra}/>'


def _container(name: str, x: float, y: float, half: float, height: float, rgba: str) -> str:
    t = 0.006
    z = TABLE_TOP + height / 2
    walls = [
        _box(f"{name}_floor", (x, y, TABLE_TOP + 0.002), (half + t, half + t, 0.002), rgba),
        _box(f"{name}_wx0", (x - half - t / 2, y, z), (t / 2, half + t, height / 2), rgba),
        _box(f"{name}_wx1", (x + half + t / 2, y, z), (t / 2, half + t, height / 2), rgba),
        _box(f"{name}_wy0", (x, y - half - t / 2, z), (half, t / 2, height / 2), rgba),
        _box(f"{name}_wy1", (x, y + half + t / 2, z), (half, t / 2, height / 2), rgba),
    ]
    return f'<body name="{name}" pos="0 0 0">{"".join(walls)}</body>'


def _part(p: PartSpec, z: float) -> str:
    h = p.half
    import math

    qw, qz = math.cos(p.yaw / 2), math.sin(p.yaw / 2)
    return (f'<body name="{p.id}" pos="{p.x:.4f} {p.y:.4f} {z:.4f}" quat="{qw:.6f} 0 0 {qz:.6f}">'
            f'<freejoint name="{p.id}:joint"/>'
            f'<geom name="{p.id}" type="box" size="{h} {h} {h}" rgba="{COLOURS[p.colour]}" mass="{p.mass}" '
            f'condim="4" friction="1 0.05 0.01" solimp="0.99 0.99 0.001" solref="0.005 1"/></body>')


def _start_heights(parts: tuple[PartSpec, ...]) -> dict[str, float]:
    z: dict[str, float] = {}
    for p in parts:
        if p.on == "table":
            z[p.id] = TABLE_TOP + p.half + 0.0005
        elif p.on == "conveyor":
            z[p.id] = CONVEYOR_TOP + p.half + 0.0005
        else:
            below = next((q for q in parts if q.id == p.on), None)
            if below is None or below.id not in z:
                raise ConfigError(f"part {p.id}: on={p.on!r} must be table, conveyor or an earlier part's id")
            z[p.id] = z[below.id] + below.half + p.half + 0.001
    return z


def cell_xml(layout: Layout) -> str:
    """The whole cell as one MJCF document (meshes are read from the vendored assets folder)."""
    robot = (ASSETS / "robot.xml").read_text().split("<mujoco>", 1)[1].rsplit("</mujoco>", 1)[0]
    shared = (ASSETS / "shared.xml").read_text().split("<mujoco>", 1)[1].rsplit("</mujoco>", 1)[0]
    z = _start_heights(layout.parts)
    furniture = [
        _box("table", (1.30, 0.75, TABLE_TOP / 2), (0.35, 0.47, TABLE_TOP / 2), "0.75 0.72 0.66 1"),
        _box("conveyor", (CONVEYOR_X, (CONVEYOR_Y0 + CONVEYOR_Y1) / 2, (TABLE_TOP + CONVEYOR_TOP) / 2),
             (CONVEYOR_HALF_W, (CONVEYOR_Y1 - CONVEYOR_Y0) / 2, (CONVEYOR_TOP - TABLE_TOP) / 2), "0.2 0.2 0.22 1",
             'friction="0.05 0.005 0.0001"'),
    ]
    bins = [_container(n, x, y, h, ht, "0.55 0.55 0.6 1" if n != "bin_reject" else "0.5 0.3 0.3 1")
            for n, (x, y, h, ht) in BINS.items()]
    bins += [_container(n, x, y, h, ht, "0.35 0.35 0.4 1") for n, (x, y, h, ht) in FIXTURES.items()]
    hx, hy, hz = HUMAN_HAND
    human = (f'<body name="human" pos="{hx} {hy + 0.33} 0">'
             f'<geom name="human_torso" type="capsule" fromto="0 0 0.1 0 0 1.45" size="0.16" rgba="0.9 0.6 0.4 1"/>'
             f'<geom name="human_arm" type="capsule" fromto="0 -0.1 1.1 0 {-0.33 + 0.05} {hz}" size="0.04" '
             f'rgba="0.9 0.6 0.4 1"/>'
             f'<geom name="human_hand" type="sphere" pos="0 -0.33 {hz}" size="0.045" rgba="0.9 0.6 0.4 1"/></body>'
             ) if layout.keepout else ""
    sites = [f'<site name="keepout" type="cylinder" pos="{hx} {hy} {TABLE_TOP + 0.001}" '
             f'size="{NEAR_RADIUS} 0.001" rgba="1 0.2 0.2 0.25"/>' if layout.keepout else ""]
    sites += [f'<site name="{n}" type="cylinder" pos="{x} {y} {TABLE_TOP + 0.0005}" size="0.03 0.0005" '
              f'rgba="0.1 0.8 0.9 0.6"/>' for n, (x, y) in layout.targets.items()]
    parts = [_part(p, z[p.id]) for p in layout.parts]
    return f"""<mujoco model="blacksoil-cell">
<compiler angle="radian" coordinate="local" meshdir="{ASSETS}"/>
<option timestep="0.002" cone="elliptic" impratio="4"><flag warmstart="enable"/></option>
<visual><global offwidth="640" offheight="480"/><quality shadowsize="2048"/></visual>
{shared}
<worldbody>
<light directional="true" ambient="0.3 0.3 0.3" diffuse="0.7 0.7 0.7" specular="0.2 0.2 0.2" pos="0 0 4" dir="0 0 -1"/>
<geom name="floor" type="plane" pos="1 0.75 0" size="2 2 1" rgba="0.3 0.32 0.35 1"/>
<camera name="overview" pos="2.05 0.75 1.22" xyaxes="0 1 0 -0.72 0 0.69" fovy="50"/>
{robot}
<body name="cell" pos="0 0 0">{"".join(furniture)}{"".join(sites)}</body>
{"".join(bins)}
{human}
{"".join(parts)}
</worldbody>
<actuator>
<position ctrllimited="true" ctrlrange="0 0.2" joint="robot0:l_gripper_finger_joint" kp="30000" name="grip_l"/>
<position ctrllimited="true" ctrlrange="0 0.2" joint="robot0:r_gripper_finger_joint" kp="30000" name="grip_r"/>
</actuator>
</mujoco>"""
