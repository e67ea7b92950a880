"""A test plugin distribution: each module is one plugin (see pyproject.toml)."""
