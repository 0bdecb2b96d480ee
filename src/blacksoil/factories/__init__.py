"""Industry solution templates that run on the platform.

Each factory is a simulation, its tools, its agents and its AgentScore tasks.
"""
