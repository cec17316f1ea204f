from django.contrib import admin

from .models import Task, TaskFollowUp, TaskRun


class TaskRunInline(admin.TabularInline):
    model = TaskRun
    extra = 0
    fields = ("status", "resume_from", "created_at")
    readonly_fields = ("created_at",)
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


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "status", "resume_from", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("task", "resume_from")
    readonly_fields = ("created_at", "updated_at")
    inlines = [TaskFollowUpInline]


@admin.register(TaskFollowUp)
class TaskFollowUpAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "author_name", "created_at")
    search_fields = ("text", "author_name", "author_slack_user_id")
    raw_id_fields = ("run",)
    readonly_fields = ("idempotency_key", "created_at")
