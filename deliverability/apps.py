from django.apps import AppConfig


class DeliverabilityConfig(AppConfig):
    name = "deliverability"
    verbose_name = "Deliverability"

    def ready(self) -> None:
        # The send pipeline (campaigns) signs, finds MX hosts, checks From addresses and asks
        # about repair plans through these; campaigns cannot import this app, so it is plugged in here.
        from campaigns.extensions import FromCheck, extensions
        from deliverability import dns_checks, readiness, repair, signing

        def check_from_address(address: str) -> FromCheck:
            result = readiness.check_from_address(address)
            return FromCheck(result.allowed, result.problems)

        extensions.sign = signing.sign_message
        extensions.mx_hosts = dns_checks.mx_hosts
        extensions.check_from_address = check_from_address
        extensions.envelope_from = readiness.envelope_from
        extensions.send_id_from_return_path = readiness.send_id_from_return_path
        extensions.uses_esp = readiness.uses_esp
        extensions.repair_limit = repair.gate_limit

        # Signing keys and envelope domains are cached per process for a minute; a change made
        # in this process takes effect at once.
        from django.db.models.signals import post_delete, post_save

        from deliverability.models import DkimKey, SendingDomain

        def forget_domain(sender, instance, **kwargs) -> None:
            name = instance.domain if isinstance(instance, SendingDomain) else instance.domain.domain
            signing.forget_cached_keys(name)
            readiness.forget_cached_domain(name)

        for model in (SendingDomain, DkimKey):
            post_save.connect(forget_domain, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(forget_domain, sender=model, dispatch_uid=f"forget-deleted-{model.__name__}")
