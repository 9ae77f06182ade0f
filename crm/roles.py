"""Staff roles as Django groups.

The three role groups are owned by the product: `sync_roles()` gives each exactly the
permissions the rules below allow, on every `migrate`, so models added by later migrations
join the right roles without anybody editing groups by hand. Staff who need a different
mix create their own group; edits to these three are reset by the next migrate.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

MARKETING_MANAGER = "Marketing manager"
MARKETER = "Marketer"
VIEWER = "Viewer"

PRODUCT_APPS = ("crm", "campaigns", "deliverability")
ALL_ACTIONS = frozenset({"add", "change", "delete", "view"})
VIEW_ONLY = frozenset({"view"})

# Nobody edits or deletes the consent log, whatever their role (DESIGN invariant 3).
_CONSENT_LOG = ("crm", "consentrecord")

# Per role: app label → actions allowed on its models, then per-model overrides.
_APP_RULES: dict[str, dict[str, frozenset[str]]] = {
    MARKETING_MANAGER: {
        "crm": ALL_ACTIONS,
        "campaigns": ALL_ACTIONS,
        "deliverability": ALL_ACTIONS,
        "django_celery_beat": ALL_ACTIONS,
    },
    MARKETER: {"crm": ALL_ACTIONS, "campaigns": ALL_ACTIONS, "deliverability": VIEW_ONLY},
    VIEWER: {"crm": VIEW_ONLY, "campaigns": VIEW_ONLY, "deliverability": VIEW_ONLY},
}
_MODEL_RULES: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    MARKETING_MANAGER: {_CONSENT_LOG: frozenset({"view"})},
    MARKETER: {
        _CONSENT_LOG: frozenset({"view"}),
        # Lifting a suppression could re-mail a bounced or complaining address.
        ("crm", "suppression"): frozenset({"add", "view"}),
        ("crm", "subscriptiontype"): frozenset({"add", "change", "view"}),
        # Import jobs are the record of who imported what.
        ("crm", "importjob"): frozenset({"add", "change", "view"}),
    },
    VIEWER: {},
}
ROLES = tuple(_APP_RULES)


def allowed_actions(role: str, app_label: str, model: str) -> frozenset[str]:
    """The permission actions `role` has on `app_label.model`."""
    override = _MODEL_RULES[role].get((app_label, model))
    if override is not None:
        return override
    return _APP_RULES[role].get(app_label, frozenset())


def sync_roles(apps=global_apps) -> None:
    """Create the role groups and set their permissions from the rules. Safe to run twice."""
    # Permissions are normally created after all migrations ran; make sure ours exist now.
    for label in (*PRODUCT_APPS, "django_celery_beat"):
        create_permissions(global_apps.get_app_config(label), apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = list(Permission.objects.select_related("content_type"))
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        granted = [
            permission
            for permission in permissions
            if permission.codename.split("_", 1)[0]
            in allowed_actions(role, permission.content_type.app_label, permission.content_type.model)
        ]
        group.permissions.set(granted)


def sync_roles_after_migrate(sender, apps=global_apps, **kwargs) -> None:
    # post_migrate fires once per app that has models; sync_roles creates whatever
    # permissions do not exist yet, so running on crm's signal covers every app.
    if sender.label == "crm":
        sync_roles(apps)
