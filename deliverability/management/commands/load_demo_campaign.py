from django.core.management.base import BaseCommand
from django.utils import timezone

from campaigns.models import Campaign
from deliverability.demo import load_demo_campaign


class Command(BaseCommand):
    help = "Load a demo sending domain and a draft campaign whose recipients exercise every ISP simulator rule."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="Do nothing if any campaign exists.")

    def handle(self, *args, if_empty: bool, **options):
        if if_empty and Campaign.objects.exists():
            return
        campaign = load_demo_campaign(now=timezone.now())
        self.stdout.write(f"Demo campaign ready: {campaign} (admin → Campaigns → Send…).")
