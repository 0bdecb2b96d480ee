"""Alembic environment of the experience store.

Runs online against the connection the store passes in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from blacksoil.experience.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the experience migrations through ExperienceStore (it passes the connection)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
