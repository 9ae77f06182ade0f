"""Deliverwell settings: every knob comes from the environment.

Defaults are safe for a local run (SQLite under var/, kombu's filesystem broker, DEBUG on);
production overrides them. Helpers raise ImproperlyConfigured on values they cannot parse,
so a typo fails at start-up instead of half-working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import secrets
import zoneinfo
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DELIVERWELL_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_percent(name: str, default: float) -> float:
    """A percentage from 0 to 100, such as `0.3` or `20`."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number (a percentage such as 0.3 or 20).") from None
    if not 0 <= value <= 100:
        raise ImproperlyConfigured(f"{name}={value} must be a percentage from 0 to 100.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json_object(name: str, default: dict) -> dict:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object.")
    return value


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    raw = os.environ.get(name, default)
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(s for s in schemes if s))
        raise ImproperlyConfigured(f"{name}={raw!r}: scheme must be one of {allowed}.")
    return raw


def env_ip_list(name: str, default: list[str]) -> list[str]:
    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address.") from None
    return values


def env_int_list(name: str, default: list[int]) -> list[int]:
    values = env_list(name, [str(value) for value in default])
    try:
        numbers = [int(value) for value in values]
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={os.environ.get(name)!r} is not a comma-separated list of integers."
        ) from None
    if any(number < 1 for number in numbers):
        raise ImproperlyConfigured(f"{name}: every number must be at least 1.")
    return numbers


def env_date(name: str) -> date | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a date (YYYY-MM-DD).") from None


def env_rates(name: str) -> dict[str, float]:
    rates = env_json_object(name, {})
    if not all(isinstance(value, int | float) and value > 0 for value in rates.values()):
        raise ImproperlyConfigured(f"{name}: every rate must be a positive number of messages a second.")
    return {str(domain).lower(): float(value) for domain, value in rates.items()}


def env_limits(name: str) -> dict[str, int]:
    limits = env_json_object(name, {})
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in limits.values()):
        raise ImproperlyConfigured(f"{name}: every limit must be a positive whole number.")
    return {str(domain).lower(): value for domain, value in limits.items()}


def env_fernet_keys(name: str, default: list[str]) -> list[str]:
    keys = env_list(name, default)
    for key in keys:
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ImproperlyConfigured(
                f"{name}: {key[:6]}… is not a Fernet key (32 bytes, url-safe base64: "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
            )
    return keys


def local_secret_key(path: Path) -> str:
    """Return the local-only secret key stored in var/, creating it on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = local_secret_key(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes={"http", "https"}).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_celery_beat",
    "anymail",
    "import_export",
    "django_altcha",
    "crm",
    "campaigns",
    "deliverability",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'deliverwell.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL lets the web server, the worker and beat read while one of them writes;
    # IMMEDIATE transactions take the write lock up front instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "", schemes={"", "redis", "rediss", "unix"})
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))

CSRF_FAILURE_VIEW = "crm.views.csrf_failure"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None

# Celery. The local default needs no server: kombu's filesystem transport under var/.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL",
    "filesystem://",
    schemes={"filesystem", "redis", "rediss", "amqp", "amqps", "memory"},
)
if CELERY_BROKER_URL.startswith("filesystem"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Email: any anymail ESP through EMAIL_BACKEND + ANYMAIL (a JSON object), or SMTP.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
ANYMAIL = env_json_object("ANYMAIL", {})
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Deliverwell <noreply@localhost>")

# Subscription lifecycle: signup forms, double opt-in, preference center, unsubscribe.
DOUBLE_OPT_IN_EXPIRY_DAYS = env_int("DOUBLE_OPT_IN_EXPIRY_DAYS", 7, minimum=1)
CONFIRMATION_RESEND_MINUTES = env_int("CONFIRMATION_RESEND_MINUTES", 15, minimum=0)
PENDING_SUBSCRIPTION_CLEANUP_DAYS = env_int("PENDING_SUBSCRIPTION_CLEANUP_DAYS", 30, minimum=1)
SIGNUP_RATE_LIMIT = env_int("SIGNUP_RATE_LIMIT", 10, minimum=1)
SIGNUP_RATE_WINDOW_SECONDS = env_int("SIGNUP_RATE_WINDOW_SECONDS", 600, minimum=1)
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
UNSUBSCRIBE_MAILTO = env_str("UNSUBSCRIBE_MAILTO", "")
# ALTCHA proof of work: self-hosted, no third-party call. The HMAC key signs challenges.
ALTCHA_HMAC_KEY = env_str("ALTCHA_HMAC_KEY", "") or hashlib.sha256(f"altcha:{SECRET_KEY}".encode()).hexdigest()
ALTCHA_MAX_NUMBER = env_int("ALTCHA_MAX_NUMBER", 100_000, minimum=1000)
ALTCHA_CHALLENGE_EXPIRE = env_int("ALTCHA_CHALLENGE_EXPIRE_SECONDS", 1200, minimum=30) * 1000

# Contact imports from the admin. Uploads wait here until their job ends; the web server and
# the Celery workers must both see this directory (shared storage when they run on several hosts).
IMPORT_UPLOAD_DIR = Path(env_str("IMPORT_UPLOAD_DIR", str(VAR_DIR / "imports")))
# The preview is a dry run of this many data rows (of each file in a ZIP); the full run happens
# once, in Celery, after staff confirm.
IMPORT_PREVIEW_ROWS = env_int("IMPORT_PREVIEW_ROWS", 1000, minimum=1)
# A running import that reports no progress for this long lost its worker and is restarted.
IMPORT_STALE_MINUTES = env_int("IMPORT_STALE_MINUTES", 30, minimum=5)
IMPORT_MAX_ATTEMPTS = env_int("IMPORT_MAX_ATTEMPTS", 3, minimum=1)

# Secrets stored in the database (DKIM private keys, mailbox passwords) are encrypted with the
# first of these Fernet keys; all of them decrypt, so a new key goes first and the old one stays
# until everything was re-encrypted. Derived from SECRET_KEY when unset: set it in production,
# or rotating SECRET_KEY makes the stored secrets unreadable.
ENCRYPTION_KEYS = env_fernet_keys(
    "ENCRYPTION_KEYS",
    [base64.urlsafe_b64encode(hashlib.sha256(f"encryption:{SECRET_KEY}".encode()).digest()).decode()],
)

# Sending domains. DNS checks ask these resolvers (empty: the system's, from /etc/resolv.conf)
# on this port; a resolver that does not answer within the timeout makes a check "could not
# check", never "fail".
DNS_NAMESERVERS = env_ip_list("DNS_NAMESERVERS", [])
DNS_PORT = env_int("DNS_PORT", 53, minimum=1)
DNS_TIMEOUT_SECONDS = env_int("DNS_TIMEOUT_SECONDS", 5, minimum=1)
# The IP addresses our direct SMTP transport sends from: SPF, PTR and allowlisting advice.
SENDING_IPS = env_ip_list("SENDING_IPS", [])
# The host that receives bounces for a dedicated return-path domain on direct SMTP (its MX).
BOUNCE_MX_HOST = env_str("BOUNCE_MX_HOST", "")
# Campaigns refuse a From address whose sending domain fails a check; off (staging only), they warn.
REQUIRE_PASSING_SENDING_DOMAIN = env_bool("REQUIRE_PASSING_SENDING_DOMAIN", not DEBUG)

# Sender health (deliverability/health.py, deliverability/repair.py): jobs run by Celery beat.
# The daily rollup recomputes this many recent days each run (events may arrive late).
HEALTH_ROLLUP_DAYS = env_int("HEALTH_ROLLUP_DAYS", 3, minimum=1)
# Graymail, after HubSpot's rule: a contact that never engaged (human open or click) and got this
# many marketing emails, or that engaged before but not with the last UNENGAGED_ENGAGED_SENDS, is
# unengaged; campaigns leave unengaged contacts out unless they include them (re-engagement).
UNENGAGED_NEVER_ENGAGED_SENDS = env_int("UNENGAGED_NEVER_ENGAGED_SENDS", 11, minimum=1)
UNENGAGED_ENGAGED_SENDS = env_int("UNENGAGED_ENGAGED_SENDS", 16, minimum=1)
# Engaged "recently": a human open or click within this many days ("resume for engaged contacts
# only" keeps these; sunset candidates are the others).
RECENTLY_ENGAGED_DAYS = env_int("RECENTLY_ENGAGED_DAYS", 90, minimum=1)
# Sunset: contacts that ignored a re-engagement campaign for this many days are offered to staff
# for suppression (Deliverability → Sunset review).
SUNSET_AFTER_DAYS = env_int("SUNSET_AFTER_DAYS", 30, minimum=1)
# Open-rate evaluation per sending domain, daily: the human open rate over a rolling window that
# leaves out the last hours (their opens have not come in yet), judged only with enough deliveries.
OPEN_RATE_WINDOW_DAYS = env_int("OPEN_RATE_WINDOW_DAYS", 30, minimum=1)
OPEN_RATE_EXCLUDE_HOURS = env_int("OPEN_RATE_EXCLUDE_HOURS", 48, minimum=0)
OPEN_RATE_MIN_DELIVERED = env_int("OPEN_RATE_MIN_DELIVERED", 400, minimum=1)
# Below this for this many consecutive daily evaluations: a critical alert and a repair plan.
OPEN_RATE_CRITICAL_PERCENT = env_percent("OPEN_RATE_CRITICAL_PERCENT", 10.0)
OPEN_RATE_CRITICAL_DAYS = env_int("OPEN_RATE_CRITICAL_DAYS", 7, minimum=1)
# A fall by this share of the trailing baseline (the days before the window): a warning alert.
OPEN_RATE_BASELINE_DAYS = env_int("OPEN_RATE_BASELINE_DAYS", 90, minimum=1)
OPEN_RATE_DROP_PERCENT = env_percent("OPEN_RATE_DROP_PERCENT", 50.0)
# The bad-send guard pauses a sending campaign over these rates (HubSpot's and Gmail's published
# limits), once it has handed over at least BAD_SEND_MIN_ATTEMPTED messages.
BAD_SEND_MIN_ATTEMPTED = env_int("BAD_SEND_MIN_ATTEMPTED", 200, minimum=1)
BAD_SEND_HARD_BOUNCE_PERCENT = env_percent("BAD_SEND_HARD_BOUNCE_PERCENT", 5.0)
BAD_SEND_COMPLAINT_WARNING_PERCENT = env_percent("BAD_SEND_COMPLAINT_WARNING_PERCENT", 0.1)
BAD_SEND_COMPLAINT_CRITICAL_PERCENT = env_percent("BAD_SEND_COMPLAINT_CRITICAL_PERCENT", 0.3)
BAD_SEND_UNSUBSCRIBE_PERCENT = env_percent("BAD_SEND_UNSUBSCRIBE_PERCENT", 5.0)
# Reputation repair plans: step 1 mails contacts who clicked within REPAIR_PLAN_CLICKED_DAYS, the
# next steps those engaged within each of REPAIR_PLAN_ENGAGED_DAYS, the last a re-permission
# campaign to the rest. A step lasts at least REPAIR_PLAN_STEP_DAYS and advances when its human
# open rate reaches the target over at least REPAIR_PLAN_MIN_DELIVERED deliveries; below the relapse
# rate it steps back. REPAIR_PLAN_DAILY_CAPS: messages a day per step. The plan completes after
# REPAIR_PLAN_HEALTHY_DAYS healthy daily evaluations on its last step.
REPAIR_PLAN_STEP_DAYS = env_int("REPAIR_PLAN_STEP_DAYS", 14, minimum=1)
REPAIR_PLAN_CLICKED_DAYS = env_int("REPAIR_PLAN_CLICKED_DAYS", 14, minimum=1)
REPAIR_PLAN_ENGAGED_DAYS = env_int_list("REPAIR_PLAN_ENGAGED_DAYS", [30, 60, 90])
REPAIR_PLAN_DAILY_CAPS = env_int_list("REPAIR_PLAN_DAILY_CAPS", [1000, 2500, 5000, 10000, 20000])
if len(REPAIR_PLAN_DAILY_CAPS) != len(REPAIR_PLAN_ENGAGED_DAYS) + 2:
    raise ImproperlyConfigured(
        f"REPAIR_PLAN_DAILY_CAPS needs one cap per step: {len(REPAIR_PLAN_ENGAGED_DAYS) + 2} (clicked, each of "
        "REPAIR_PLAN_ENGAGED_DAYS, re-permission)."
    )
REPAIR_PLAN_TARGET_OPEN_PERCENT = env_percent("REPAIR_PLAN_TARGET_OPEN_PERCENT", 20.0)
REPAIR_PLAN_RELAPSE_OPEN_PERCENT = env_percent("REPAIR_PLAN_RELAPSE_OPEN_PERCENT", 10.0)
REPAIR_PLAN_MIN_DELIVERED = env_int("REPAIR_PLAN_MIN_DELIVERED", 200, minimum=1)
REPAIR_PLAN_HEALTHY_DAYS = env_int("REPAIR_PLAN_HEALTHY_DAYS", 14, minimum=1)

# Campaigns. The frequency cap: at most this many marketing emails per contact per rolling window;
# sends over it are recorded as skipped (frequency cap), never silently dropped.
FREQUENCY_CAP_EMAILS = env_int("FREQUENCY_CAP_EMAILS", 3, minimum=1)
FREQUENCY_CAP_DAYS = env_int("FREQUENCY_CAP_DAYS", 7, minimum=1)
# Deferred (4xx) sends are retried with backoff until accepted, refused, or this long after the
# first attempt; then they count as a soft bounce "expired".
SEND_RETRY_HOURS = env_int("SEND_RETRY_HOURS", 72, minimum=1)
# Recipients per Celery task: each task claims this many sends and reuses its connections. A
# batch costs 10 SQL statements whatever its size (10 per 1,000 messages at 1,000), and it is also
# the most a worker killed mid-batch can send twice (a graceful stop finishes the batch).
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 1000, minimum=1)
# Sending chains started per campaign: how many workers send one campaign side by side.
SEND_PARALLEL_TASKS = env_int("SEND_PARALLEL_TASKS", 2, minimum=1)
# Campaigns sent "at this local time for each recipient" use this zone for contacts without one.
CAMPAIGN_DEFAULT_TIME_ZONE = env_str("CAMPAIGN_DEFAULT_TIME_ZONE", "UTC")
if CAMPAIGN_DEFAULT_TIME_ZONE not in zoneinfo.available_timezones():
    raise ImproperlyConfigured(f"CAMPAIGN_DEFAULT_TIME_ZONE={CAMPAIGN_DEFAULT_TIME_ZONE!r} is not an IANA time zone.")
# Sending rates shared by all workers (0: unlimited): messages a second overall, and per
# receiving domain as a JSON object such as {"gmail.com": 20, "outlook.com": 10}.
SEND_RATE_PER_SECOND = env_int("SEND_RATE_PER_SECOND", 0, minimum=0)
SEND_DOMAIN_RATES = env_rates("SEND_DOMAIN_RATES")
# Open connections to one receiving domain's MX hosts, all workers together (direct SMTP without
# a smarthost): a default, and limits per domain as a JSON object such as {"yahoo.com": 5}.
# Postfix's default_destination_concurrency_limit is 20 too.
SEND_CONNECTIONS_PER_DOMAIN = env_int("SEND_CONNECTIONS_PER_DOMAIN", 20, minimum=1)
SEND_DOMAIN_CONNECTIONS = env_limits("SEND_DOMAIN_CONNECTIONS")
# Warming up a new dedicated IP: messages allowed per day, day by day from SEND_WARMUP_START
# (YYYY-MM-DD); the last cap holds until the schedule is removed. Empty: no warm-up.
SEND_WARMUP_DAILY_CAPS = env_int_list("SEND_WARMUP_DAILY_CAPS", [])
SEND_WARMUP_START = env_date("SEND_WARMUP_START")
if SEND_WARMUP_DAILY_CAPS and SEND_WARMUP_START is None:
    raise ImproperlyConfigured("SEND_WARMUP_DAILY_CAPS needs SEND_WARMUP_START (YYYY-MM-DD), the warm-up's first day.")
# Direct SMTP: a smarthost or, when empty, each recipient domain's MX. Local runs (DEBUG) send
# to the ISP simulator that `make run` starts on port 2525.
CAMPAIGN_SMTP_HOST = env_str("CAMPAIGN_SMTP_HOST", "127.0.0.1" if DEBUG else "")
CAMPAIGN_SMTP_PORT = env_int("CAMPAIGN_SMTP_PORT", 2525 if DEBUG else 25, minimum=1)
# A receiving server that does not answer within this many seconds leaves the send "not sent".
CAMPAIGN_SMTP_TIMEOUT_SECONDS = env_int("CAMPAIGN_SMTP_TIMEOUT_SECONDS", 30, minimum=1)

# Events. Soft bounces from this many campaigns within this many days, with no delivery in
# between, count as a hard bounce (the address is suppressed).
SOFT_BOUNCE_ESCALATION_COUNT = env_int("SOFT_BOUNCE_ESCALATION_COUNT", 3, minimum=1)
SOFT_BOUNCE_ESCALATION_DAYS = env_int("SOFT_BOUNCE_ESCALATION_DAYS", 60, minimum=1)
# Opens and clicks no person made (see campaigns/machines.py): a pixel fetched this soon after
# delivery is a prefetch; a click this soon a security scanner; so is a burst of this many
# different links of one message within this many seconds.
TRACKING_PREFETCH_SECONDS = env_int("TRACKING_PREFETCH_SECONDS", 2, minimum=0)
TRACKING_SCANNER_SECONDS = env_int("TRACKING_SCANNER_SECONDS", 10, minimum=0)
TRACKING_BURST_LINKS = env_int("TRACKING_BURST_LINKS", 3, minimum=2)
TRACKING_BURST_SECONDS = env_int("TRACKING_BURST_SECONDS", 5, minimum=1)
# Open and click hits and ESP webhook bodies wait in this Redis and are written in batches by a
# worker, so the endpoints answer without the database (and keep answering while it is briefly
# down). Give it persistence in production. Empty: hits are written at once, webhooks queued whole.
EVENT_BUFFER_URL = env_url("EVENT_BUFFER_URL", REDIS_URL, schemes={"", "redis", "rediss", "unix"})
# Distinct links registered per campaign; links beyond (personalized URLs) are left untracked.
TRACKING_MAX_LINKS_PER_CAMPAIGN = env_int("TRACKING_MAX_LINKS_PER_CAMPAIGN", 500, minimum=1)
# A web process sends its tracking hits to the event buffer together, this many milliseconds after
# the first of them (one round trip to Redis for many hits); 0: each hit on its own, in the request.
TRACKING_FLUSH_MS = env_int("TRACKING_FLUSH_MS", 5, minimum=0)
UTM_SOURCE = env_str("UTM_SOURCE", "deliverwell")
# The campaign list's figures are refreshed while a campaign sends and for this many days after.
STATS_REFRESH_DAYS = env_int("STATS_REFRESH_DAYS", 30, minimum=1)
# ESP webhooks: bodies larger than this are refused (413) before anything is parsed.
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)

# One-to-one email from staff members' connected inboxes, and sequences (not marketing email).
# The same text (before personalization) to more than this many contacts within an hour is
# bulk email disguised as one-to-one: refused, with the advice to use a campaign.
ONE_TO_ONE_BULK_LIMIT = env_int("ONE_TO_ONE_BULK_LIMIT", 20, minimum=1)
# A mailbox's SMTP or IMAP server that does not answer within this many seconds has failed.
ONE_TO_ONE_TIMEOUT_SECONDS = env_int("ONE_TO_ONE_TIMEOUT_SECONDS", 20, minimum=1)
# Certificates (PEM) to trust besides the system's, for mailbox servers with a private CA.
ONE_TO_ONE_CA_FILE = env_str("ONE_TO_ONE_CA_FILE", "")
if ONE_TO_ONE_CA_FILE and not Path(ONE_TO_ONE_CA_FILE).is_file():
    raise ImproperlyConfigured(f"ONE_TO_ONE_CA_FILE={ONE_TO_ONE_CA_FILE!r} is not a file.")
# Sequence steps go out in business hours in the contact's time zone (contacts without one:
# CAMPAIGN_DEFAULT_TIME_ZONE): from the start hour to the end hour on these ISO weekdays (1 = Monday).
SEQUENCE_BUSINESS_HOURS_START = env_int("SEQUENCE_BUSINESS_HOURS_START", 9, minimum=0)
SEQUENCE_BUSINESS_HOURS_END = env_int("SEQUENCE_BUSINESS_HOURS_END", 17, minimum=1)
if not SEQUENCE_BUSINESS_HOURS_START < SEQUENCE_BUSINESS_HOURS_END <= 24:
    raise ImproperlyConfigured("SEQUENCE_BUSINESS_HOURS_START must be before SEQUENCE_BUSINESS_HOURS_END (at most 24).")
SEQUENCE_BUSINESS_DAYS = env_int_list("SEQUENCE_BUSINESS_DAYS", [1, 2, 3, 4, 5])
if not SEQUENCE_BUSINESS_DAYS or any(day > 7 for day in SEQUENCE_BUSINESS_DAYS):
    raise ImproperlyConfigured("SEQUENCE_BUSINESS_DAYS: ISO weekdays from 1 (Monday) to 7 (Sunday).")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
