from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom, on purpose")


def login_view(request: HttpRequest) -> HttpResponse:
    """Authenticate with whatever was posted (so a test can post extra credentials)."""
    user = authenticate(request, **request.POST.dict())
    if user is None:
        return HttpResponse("no", status=401)
    login(request, user)
    return HttpResponse("ok")


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")
