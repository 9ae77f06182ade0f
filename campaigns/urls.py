from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [path("view/<str:token>/", views.view_in_browser, name="view")]
