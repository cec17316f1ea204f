# One image for web, Temporal worker, Celery worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# .pyc files for our modules (PYTHONDONTWRITEBYTECODE stops Python writing them at run time):
# Temporal's workflow sandbox imports the workflow modules afresh for every workflow run.
RUN python -m compileall -q products temporal posthog_app
RUN DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "posthog_app.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--worker-class", "gthread"]
