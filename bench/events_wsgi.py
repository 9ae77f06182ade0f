"""The gunicorn app bench/events.py loads: the project's URLs plus an empty view (the baseline)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after Django is set up)

settings.ROOT_URLCONF = "bench.events_urls"
