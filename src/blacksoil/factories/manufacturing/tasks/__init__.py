"""AgentScore task files of the manufacturing template and the deterministic script that writes them.

Regenerate with `python -m blacksoil.factories.manufacturing.tasks.generate`; never edit the YAML by hand.
"""
