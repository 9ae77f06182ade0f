from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Deliverwell"
admin.site.site_title = "Deliverwell"
admin.site.index_title = "Contacts, consent, campaigns and deliverability"
# Lists are wide (status badges, dates); the home page is the navigation.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("crm.urls")),
    path("", include("campaigns.urls")),
]
