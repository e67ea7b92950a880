"""The admin pages of the shared plugin state (``TOCSIN_STATE = "django"``).

*Shared plugin switches* lists each plugin an operator switched, with who, when and
why; adding or changing one (a reason is required) switches the plugin in every
process, and deleting one resets the plugin to each process's own configuration.  The
actions *Enable* / *Disable the selected plugins everywhere* do the same for many.
*Plugin switch changes* is the audit trail, read-only.  Every write goes through
:mod:`tocsin.state` (``who`` is the admin user), so the version row moves and every
process applies the change within its interval.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

import tocsin.state
from tocsin.contrib.django.models import PluginState, PluginStateChange
from tocsin.contrib.django.state import DjangoBackend

__all__ = ["PluginStateAdmin", "PluginStateChangeAdmin"]


def _who(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    return f"{name} (django admin)"


def _state() -> tocsin.state.SharedState:
    """The shared state this process follows if it is Django's database, else one
    on the default database (the admin edits Django's tables, whatever else is set)."""
    state = tocsin.state.current()
    if state is not None and isinstance(state.backend, DjangoBackend):
        return state
    return tocsin.state.SharedState(DjangoBackend(), background=False)


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


class PluginStateForm(forms.ModelForm):  # type: ignore[type-arg]
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why (kept).")

    class Meta:
        model = PluginState
        fields = ("name", "enabled", "reason")


@admin.register(PluginState)
class PluginStateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PluginStateForm
    list_display = ("name", "enabled", "changed_by", "changed", "reason")
    list_filter = ("enabled",)
    search_fields = ("name", "reason", "changed_by")
    actions = ("enable_everywhere", "disable_everywhere")

    @admin.display(description="changed", ordering="changed_at")
    def changed(self, obj: PluginState) -> str:
        return _when(obj.changed_at)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: PluginState, form: Any, change: bool) -> None:
        _state().set(obj.name, obj.enabled, form.cleaned_data["reason"], _who(request))

    def delete_model(self, request: HttpRequest, obj: PluginState) -> None:
        _state().reset(obj.name, "switch deleted in the admin", _who(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PluginState]) -> None:
        for obj in list(queryset):
            self.delete_model(request, obj)

    def _switch(self, request: HttpRequest, queryset: QuerySet[PluginState], on: bool) -> None:
        state = _state()
        names = [obj.name for obj in queryset]
        for name in names:
            state.set(name, on, f"{'enabled' if on else 'disabled'} in the admin", _who(request))
        what = "enabled" if on else "disabled"
        self.message_user(
            request, f"{what.capitalize()} everywhere: {', '.join(names)}.", messages.SUCCESS
        )

    @admin.action(description="Enable the selected plugins everywhere")
    def enable_everywhere(self, request: HttpRequest, queryset: QuerySet[PluginState]) -> None:
        self._switch(request, queryset, True)

    @admin.action(description="Disable the selected plugins everywhere")
    def disable_everywhere(self, request: HttpRequest, queryset: QuerySet[PluginState]) -> None:
        self._switch(request, queryset, False)


@admin.register(PluginStateChange)
class PluginStateChangeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("version", "name", "enabled", "changed_by", "changed", "reason", "host", "pid")
    list_filter = ("name",)
    search_fields = ("name", "reason", "changed_by")

    @admin.display(description="changed", ordering="changed_at")
    def changed(self, obj: PluginStateChange) -> str:
        return _when(obj.changed_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
