"""The welcome-mail plugin: receivers declared in entry-point metadata (see
pyproject.toml), so nothing here is imported until a login or logout is sent."""
