"""Cedar policies and entities shipped with blacksoil.

Loaded by blacksoil.security.policy; package data, no code.
"""
