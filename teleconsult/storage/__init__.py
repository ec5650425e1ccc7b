"""SQLAlchemy 2 models, the engine, and repositories. Schema changes go through Alembic migrations."""
