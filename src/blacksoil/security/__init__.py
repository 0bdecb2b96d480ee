"""The security pillar of blacksoil.

See DESIGN.md for what it owns and how it meets the other pillars.
"""
