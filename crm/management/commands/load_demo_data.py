from django.core.management.base import BaseCommand
from django.utils import timezone

from crm.demo import load_demo_data
from crm.models import Contact


class Command(BaseCommand):
    help = "Load demo contacts, subscriptions and consent history."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=300)
        parser.add_argument("--if-empty", action="store_true", help="Do nothing if any contact exists.")

    def handle(self, *args, contacts: int, if_empty: bool, **options):
        if if_empty and Contact.objects.exists():
            return
        created = load_demo_data(contacts=contacts, now=timezone.now())
        self.stdout.write(f"Loaded {created} demo contacts.")
