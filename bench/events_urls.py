"""bench/events.py's URLs: an empty view that returns the pixel without any work, then the project's."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.cache import never_cache

from campaigns.tracking import PIXEL
from config.urls import urlpatterns as project_urlpatterns


@never_cache
def empty(request):
    return HttpResponse(PIXEL, content_type="image/gif")


urlpatterns = [path("bench/empty.gif", empty), *project_urlpatterns]
