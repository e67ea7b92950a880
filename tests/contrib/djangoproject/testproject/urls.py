from __future__ import annotations

from blog import views
from django.urls import path

urlpatterns = [
    path("hello/", views.hello),
    path("boom/", views.boom),
    path("login/", views.login_view),
    path("logout/", views.logout_view),
]
