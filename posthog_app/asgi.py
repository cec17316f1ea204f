"""ASGI entry point: the LLM gateway's server (uvicorn), and any server that prefers ASGI.

`make run`'s `gateway` process and docker-compose's `gateway` service serve this with
uvicorn; the gateway's views (`/llm/...`) are async and stream without holding a thread.
The same application serves every other URL too (`/healthz` for the health check).
Run it with `--lifespan off` (Django does not speak the lifespan protocol) and with
`DATABASE_CONN_MAX_AGE=0`: Django closes an async request's connection when it ends,
so connections kept for reuse would only pile up.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")

application = get_asgi_application()
