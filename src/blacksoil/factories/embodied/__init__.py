"""Embodied factory: a robot work cell in MuJoCo (Fetch arm, conveyor, bins, fixtures, a person) driven by tools."""
