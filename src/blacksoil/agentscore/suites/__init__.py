"""AgentScore suites owned by the agentscore pillar (tools-basic) and the script that writes them.

Regenerate with `python -m blacksoil.agentscore.suites.generate`; never edit the YAML by hand.
"""
