from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("view/<str:token>/", views.view_in_browser, name="view"),
    path("t/o/<str:token>", views.open_pixel, name="open"),
    path("t/c/<str:token>", views.click, name="click"),
]
