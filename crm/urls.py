from django.urls import path

from crm import views

app_name = "crm"

urlpatterns = [
    path("subscribe/<slug:slug>/", views.subscribe, name="subscribe"),
    path("subscribe/<slug:slug>/thanks/", views.subscribe_thanks, name="subscribe_thanks"),
    path("confirm/new/", views.confirm_new, name="confirm_new"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("confirm/<str:token>/resend/", views.confirm_resend, name="confirm_resend"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
