"""The database: models, engine and migrations, the run lock, writes, views, the spool."""
