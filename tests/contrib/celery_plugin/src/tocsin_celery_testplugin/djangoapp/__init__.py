"""A Django app with one model, for the Django codec and ``transaction.on_commit``."""
