"""Smart-manufacturing factory template: plant simulation, tools, agents and AgentScore tasks.

Backed by real public data (NASA C-MAPSS, classic job-shop instances).
"""
