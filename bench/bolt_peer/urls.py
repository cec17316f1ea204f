from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .app import handler


@csrf_exempt
def slack_events(request: HttpRequest) -> HttpResponse:
    return handler.handle(request)


urlpatterns = [path("slack/events", slack_events)]
