"""The healthcare AgentScore suite (healthcare.yaml) and its deterministic generator."""
