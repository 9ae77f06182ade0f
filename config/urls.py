from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from campaigns import tasks, webhooks

admin.site.site_header = "Deliverwell"
admin.site.site_title = "Deliverwell"
admin.site.index_title = "Contacts, consent, campaigns and deliverability"
# Lists are wide (status badges, dates); the home page is the navigation.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # ESP webhooks (every ESP django-anymail supports): authenticated, then queued for a worker.
    path(
        "anymail/",
        include((webhooks.urlpatterns(enqueue=tasks.enqueue_webhook, schedule_drain=tasks.schedule_drain), "anymail")),
    ),
    path("", include("crm.urls")),
    path("", include("campaigns.urls")),
]
