from django.contrib import admin

from .models import AgentSettings, Task, TaskFollowUp, TaskRun, TaskRunEvent


class TaskRunInline(admin.TabularInline):
    model = TaskRun
    extra = 0
    fields = ("status", "backend", "claimed_by", "resume_from", "created_at")
    readonly_fields = ("backend", "claimed_by", "created_at")
    fk_name = "task"
    show_change_link = True


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "project", "repository", "origin_product", "created_at")
    list_filter = ("origin_product",)
    search_fields = ("title", "repository", "idempotency_key")
    raw_id_fields = ("project",)
    readonly_fields = ("idempotency_key", "created_at", "updated_at")
    inlines = [TaskRunInline]


class TaskFollowUpInline(admin.TabularInline):
    model = TaskFollowUp
    extra = 0
    fields = ("text", "author_name", "author_slack_user_id", "created_at")
    readonly_fields = ("created_at",)


class TaskRunEventInline(admin.TabularInline):
    """The run's history, read only: it records what happened."""

    model = TaskRunEvent
    extra = 0
    fields = ("created_at", "kind", "text")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "status", "backend", "claimed_by", "heartbeat_at", "resume_from", "created_at")
    list_filter = ("status", "backend", "error_kind")
    search_fields = ("claimed_by", "summary", "error")
    raw_id_fields = ("task", "resume_from")
    # The backend is fixed when the run is created; what the runner or agent reported is the record
    # of what happened, not for operators to rewrite (the status stays editable, as before).
    readonly_fields = ("backend", "claimed_by", "claimed_at", "heartbeat_at", "progress", "summary", "pr_url", "error",
                       "error_kind", "finished_at", "created_at", "updated_at")
    inlines = [TaskFollowUpInline, TaskRunEventInline]


@admin.register(AgentSettings)
class AgentSettingsAdmin(admin.ModelAdmin):
    """Choose per project whether new runs go to the built-in agent or to external runners."""

    list_display = ("project", "backend", "updated_at")
    list_filter = ("backend",)
    raw_id_fields = ("project",)
    search_fields = ("project__name",)


@admin.register(TaskFollowUp)
class TaskFollowUpAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "author_name", "created_at")
    search_fields = ("text", "author_name", "author_slack_user_id")
    raw_id_fields = ("run",)
    readonly_fields = ("idempotency_key", "created_at")
