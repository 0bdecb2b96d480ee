"""Backends that carry out the unified policy's decisions on real engines.

`local` (processes on this machine, cores as accelerators), `ray` (actors, placement groups) and
`kubernetes` (a kopf operator). Each imports its heavy dependency lazily.
"""
