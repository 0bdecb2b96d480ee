"""Red-team suites of the security pillar: sandbox escapes and prompt injection.

Run by `blacksoil redteam sandbox|injection` and by tests/security.
"""
