from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        from crm import append_only, roles

        post_migrate.connect(roles.sync_roles_after_migrate, dispatch_uid="crm.sync_roles")
        post_migrate.connect(append_only.ensure_consent_trigger_after_migrate, dispatch_uid="crm.consent_trigger")
