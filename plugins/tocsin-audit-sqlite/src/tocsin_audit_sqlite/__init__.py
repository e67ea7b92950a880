"""An audit trail of logins, logouts and saves, kept in SQLite."""
