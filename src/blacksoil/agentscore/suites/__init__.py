"""AgentScore suites owned by the agentscore pillar (tools-basic, held-out tools-general) and their generators.

Regenerate with `python -m blacksoil.agentscore.suites.generate` and `... .suites.generate_general`; never edit YAML.
"""
