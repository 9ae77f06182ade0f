"""The project's URLs plus the bare baseline view bench/signup.py compares against."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    # Parse the body like the real view does, then answer.
    request.POST.getlist("subscription_types")
    return HttpResponse("ok")


urlpatterns = [path("bare/", bare), path("", include("config.urls"))]
