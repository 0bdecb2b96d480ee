"""The scheduling pillar of blacksoil.

See docs/design.md for what it owns and how it meets the other pillars.
"""
