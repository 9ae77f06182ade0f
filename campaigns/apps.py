from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from anymail.signals import inbound, tracking

        from campaigns import events, webhooks
        from crm.signals import unsubscribed_by_link

        tracking.connect(webhooks.on_tracking, dispatch_uid="campaigns.on_tracking")
        inbound.connect(webhooks.on_inbound, dispatch_uid="campaigns.on_inbound")
        unsubscribed_by_link.connect(events.on_link_unsubscribe, dispatch_uid="campaigns.on_link_unsubscribe")
