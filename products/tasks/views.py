"""`GET /tasks/<id>/`: the page the Slack "On it! Follow along at ..." link opens."""
from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from products.accounts.facade import visible_projects

from . import runs as run_lifecycle
from . import services
from .models import Task

@require_safe
def task_page(request: HttpRequest, task_id: int) -> HttpResponse:
    """Show a task's runs to members of its project's organization: each run's follow-ups, its
    history (status changes and progress lines, with times), its result or error, and the AI
    credits it spent.

    Anyone else signed in gets the same 404 as for a missing task, so the page never
    reveals which tasks exist.
    """
    if not request.user.is_authenticated:
        # The members' sign-in page (settings.LOGIN_URL), which brings them back here.
        return redirect_to_login(request.get_full_path())
    task = services.task_with_history(
        Task.objects.filter(project__in=visible_projects(request.user)), task_id, with_events=True
    )
    if task is None:
        raise Http404("Task not found.")
    for run in task.history:
        run.task = task  # already loaded: no query per run
        run.credits = run_lifecycle.credits_of(run)
    return render(request, "tasks/task_page.html", {"task": task, "runs": task.history})
