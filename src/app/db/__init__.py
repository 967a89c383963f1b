"""Database foundation: models, engines, session factories, column types and errors."""
