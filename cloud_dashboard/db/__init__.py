"""Storage: typed SQLAlchemy 2 models (models.py), engine/session factory (engine.py), Alembic (migrate.py)."""
