"""Pages of the project itself: the home page and the members' sign-in (Django's auth views)."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """Link to the billing page, the API docs and the admin: the first URL the `make run` banner shows."""
    return render(request, "posthog_app/home.html")


# Members sign in here, not on /admin/login/ (which refuses anyone who is not staff).
# After signing in: `next` if it is a safe URL on this site, else the home page (LOGIN_REDIRECT_URL).
login = auth_views.LoginView.as_view(template_name="posthog_app/login.html", redirect_authenticated_user=True)
logout = auth_views.LogoutView.as_view()
