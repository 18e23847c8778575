"""The one settings module: every value comes from the environment with a local default."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from artcritic.checkout import DEV_DATABASE_URL, TEST_DATABASE_NAME
from artcritic.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# The development key is public on purpose; non-debug start-up refuses it below.
DEV_SECRET_KEY = "dev-insecure-artcritic-key-do-not-use-in-production"  # noqa: S105
DEBUG = env_bool("ARTCRITIC_DEBUG", True)
SECRET_KEY = env_str("ARTCRITIC_SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "ARTCRITIC_SECRET_KEY is unset while ARTCRITIC_DEBUG is off. Set a long random "
        "secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
    )
if not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("ARTCRITIC_SECRET_KEY must be at least 32 characters.")

ALLOWED_HOSTS = env_list("ARTCRITIC_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("ARTCRITIC_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "axes",
    "artcritic.audit",
    "artcritic.studio",
    "artcritic.critic",
    "artcritic.gpu",
    "artcritic.jobs",
    "artcritic.runtimes",
    "artcritic.live",
    "artcritic.designer",
    "artcritic.staff",
    "artcritic.metrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Sign-in throttling (django-axes, attempts recorded in PostgreSQL): after
# ARTCRITIC_LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is refused for ARTCRITIC_LOGIN_LOCKOUT_MINUTES, even with the right password. Staff
# unlock early in the admin (Axes › Access attempts: delete the row) or with
# `manage.py axes_reset_username NAME`. A success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ARTCRITIC_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ARTCRITIC_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# What is recorded as the username: bounded and without NUL, whatever a client posts.
AXES_USERNAME_CALLABLE = "artcritic.designer.accounts.attempted_username"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a TLS proxy the client's address is in X-Forwarded-For; trust exactly that many hops.
AXES_IPWARE_PROXY_COUNT = env_int("ARTCRITIC_TRUSTED_PROXY_COUNT", 0, minimum=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)

ROOT_URLCONF = "artcritic.urls"
ASGI_APPLICATION = "artcritic.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "artcritic.designer.context.site",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", DEV_DATABASE_URL),
        conn_max_age=env_int("ARTCRITIC_DB_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("artcritic runs on PostgreSQL only (DATABASE_URL=postgres://…).")
# Two checkouts on one machine each get their own development and test databases.
DATABASES["default"]["TEST"] = {"NAME": env_str("ARTCRITIC_TEST_DB", TEST_DATABASE_NAME)}

# One database is one artcritic: its name namespaces what this instance keeps in the shared
# Redis (Celery queues, channel-layer groups, live sequence numbers). Two checkouts, or a
# test run beside `make run`, never read each other's messages, while a worker on another
# host with the same DATABASE_URL joins the same instance without further settings.
ARTCRITIC_INSTANCE = env_str("ARTCRITIC_INSTANCE", str(DATABASES["default"]["NAME"]))
if not INSTANCE_NAME.fullmatch(ARTCRITIC_INSTANCE):
    raise ImproperlyConfigured(
        f"ARTCRITIC_INSTANCE={ARTCRITIC_INSTANCE!r} must be 1-64 letters, digits, '.', '_' or "
        "'-' (it prefixes Redis keys); set it, or give the database such a name."
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Password resets are mailed through ARTCRITIC_EMAIL_HOST. Without one, development prints
# the mail (with its one-time link) to the web server's log; a deployment offers no reset by
# mail at all, and the page says to ask an administrator (Admin › Users › password).
_EMAIL_HOST = env_str("ARTCRITIC_EMAIL_HOST", "")
ARTCRITIC_PASSWORD_RESET_BY_EMAIL = bool(_EMAIL_HOST) or DEBUG
if _EMAIL_HOST:
    MAILERS = {"default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _EMAIL_HOST,
            "port": env_int("ARTCRITIC_EMAIL_PORT", 587, minimum=1),
            "username": env_str("ARTCRITIC_EMAIL_USER", ""),
            "password": env_str("ARTCRITIC_EMAIL_PASSWORD", ""),
            "use_tls": env_bool("ARTCRITIC_EMAIL_TLS", True),
            "timeout": 20,
        },
    }}
elif DEBUG:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = env_str("ARTCRITIC_EMAIL_FROM", "artcritic <artcritic@localhost>")
PASSWORD_RESET_TIMEOUT = env_int("ARTCRITIC_PASSWORD_RESET_HOURS", 24, minimum=1) * 3600

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("ARTCRITIC_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".run" / "staticfiles"
WHITENOISE_USE_FINDERS = True
# WhiteNoise warns on every request while STATIC_ROOT is missing; in development it stays empty.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Served over HTTPS (a TLS proxy in front, which must set X-Forwarded-Proto): secure
# cookies, redirect plain HTTP, HSTS. On by default with debug off; a loopback-only
# deployment without TLS turns it off explicitly (ARTCRITIC_HTTPS=0).
ARTCRITIC_HTTPS = env_bool("ARTCRITIC_HTTPS", not DEBUG)
if ARTCRITIC_HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("ARTCRITIC_HSTS_SECONDS", 31_536_000, minimum=0)
    # Subdomains of this site's own host name, and the preload opt-in (which does nothing
    # until someone submits the domain): both what `check --deploy` asks for.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ARTCRITIC_HSTS_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("ARTCRITIC_HSTS_PRELOAD", True)
    # Internal scrapers and health checks speak plain HTTP inside the compose network.
    SECURE_REDIRECT_EXEMPT = [r"^metrics/?$", r"^healthz/?$"]

# Redis carries messages only (Celery broker, Channels layer); PostgreSQL holds the record.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Pub/sub layer: one PUBLISH per group and no per-process capacity that drops events for
# every socket of a busy server at once (bench/live.py measured both). Delivery is
# at-most-once; the clients' sequence numbers turn any loss into a visible resync.
# JSON messages: the publisher's Redis script writes them itself (artcritic/events.py).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": env_str("ARTCRITIC_CHANNEL_PREFIX", ARTCRITIC_INSTANCE),
            "serializer_format": "json",
        },
    }
}
# Live path (artcritic/events.py, artcritic/live/fanout.py): job.progress frames per job
# at most one per this many ms (first and last step always at once), and how many frames
# may wait for one slow socket before it is sent a fresh hello instead (a counted resync).
ARTCRITIC_LIVE_PROGRESS_MS = env_int("ARTCRITIC_LIVE_PROGRESS_MS", 25, minimum=0)
ARTCRITIC_LIVE_SOCKET_QUEUE = env_int("ARTCRITIC_LIVE_SOCKET_QUEUE", 256, minimum=1)

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Keep a redelivered gpu task from waiting an hour: the job lease, not the broker, owns recovery.
# Keys prefixed by the instance: `gpu.sim0` of one checkout is not `gpu.sim0` of another.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "global_keyprefix": f"{ARTCRITIC_INSTANCE}:",
}

# Object storage (MinIO in compose; SeaweedFS's S3 gateway in development and CI).
S3_ENDPOINT = env_str("S3_ENDPOINT", "127.0.0.1:8333")
S3_ACCESS_KEY = env_str("S3_ACCESS_KEY", "artcritic")
S3_SECRET_KEY = env_str("S3_SECRET_KEY", "artcritic-dev-secret")
S3_BUCKET = env_str("S3_BUCKET", "artcritic")
S3_SECURE = env_bool("S3_SECURE", False)
S3_REGION = env_str("S3_REGION", "us-east-1")
# Browsers fetch images from presigned URLs; they may need a different host than the workers.
S3_PUBLIC_ENDPOINT = env_str("S3_PUBLIC_ENDPOINT", S3_ENDPOINT)
# An S3 outage or 5xx is retried this often, after BACKOFF, 2×BACKOFF, 4×BACKOFF… seconds,
# then fails visibly as a retryable failure (never "internal error").
S3_RETRIES = env_int("S3_RETRIES", 3, minimum=0)
S3_RETRY_BACKOFF_S = env_float("S3_RETRY_BACKOFF_S", 0.5, minimum=0.0)
S3_PRESIGN_SECONDS = env_int("S3_PRESIGN_SECONDS", 300, minimum=10)
MAX_IMAGE_BYTES = env_int("ARTCRITIC_MAX_IMAGE_BYTES", 64 * 1024 * 1024, minimum=1024)

# Content Security Policy (Django's own middleware): scripts only from our static files, never
# inline; images also from the S3 endpoint browsers fetch presigned URLs from. Inline style
# attributes stay allowed (progress and score bars carry their width), inline <style> not.
_S3_PUBLIC = S3_PUBLIC_ENDPOINT if "://" in S3_PUBLIC_ENDPOINT else (
    f"{'https' if S3_SECURE else 'http'}://{S3_PUBLIC_ENDPOINT}"
)
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "blob:", _S3_PUBLIC],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# The GPU this process serves (worker) or shows by default (web).
ARTCRITIC_GPU = env_str("ARTCRITIC_GPU", "sim0")
# A GPU worker silent this long has vanished: live workers move its GPU's waiting work (and
# running work whose lease ran out) to GPUs that can run it. Well past a restart's gap.
ARTCRITIC_WORKER_GONE_S = env_float("ARTCRITIC_WORKER_GONE_S", 120.0, minimum=15.0)
ARTCRITIC_PROFILES_DIR = Path(env_str("ARTCRITIC_PROFILES_DIR", str(BASE_DIR / "profiles")))
# Simulated GPU state shared by simulated runtimes and the simulated NVML probe.
ARTCRITIC_SIM_DIR = Path(env_str("ARTCRITIC_SIM_DIR", str(BASE_DIR / ".run" / "sim")))
ARTCRITIC_SIM_TIME_SCALE = env_float("ARTCRITIC_SIM_TIME_SCALE", 1.0, minimum=0.0)
ARTCRITIC_NVML = env_str("ARTCRITIC_NVML", "auto")  # auto | real | sim
# Docker driver: the engine to talk to and the network runtime containers join (compose's).
ARTCRITIC_DOCKER_URL = env_str("ARTCRITIC_DOCKER_URL", "")
ARTCRITIC_DOCKER_NETWORK = env_str("ARTCRITIC_DOCKER_NETWORK", "")
# Every request body (forms, JSON, admin): refused with 413 past this, before it is read.
ARTCRITIC_MAX_REQUEST_BYTES = env_int("ARTCRITIC_MAX_REQUEST_BYTES", 1024 * 1024, minimum=16384)
DATA_UPLOAD_MAX_MEMORY_SIZE = ARTCRITIC_MAX_REQUEST_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = ARTCRITIC_MAX_REQUEST_BYTES
ARTCRITIC_SUBMIT_RATE_PER_MINUTE = env_int("ARTCRITIC_SUBMIT_RATE_PER_MINUTE", 30, minimum=1)
# Bearer token Prometheus sends to /metrics; empty: /metrics refuses every scrape.
ARTCRITIC_METRICS_TOKEN = env_str("ARTCRITIC_METRICS_TOKEN", "")
if ARTCRITIC_METRICS_TOKEN and len(ARTCRITIC_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "ARTCRITIC_METRICS_TOKEN must be at least 16 characters (or empty to turn /metrics off)."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("ARTCRITIC_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO; lockouts and failures stay visible.
        "axes": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}
