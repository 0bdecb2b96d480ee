"""Healthcare factory: a hospital ward over synthetic FHIR R4 patients (Synthea), for AgentScore, the learner and
the security layer. Synthetic data: not for clinical use. See docs/healthcare.md."""
