from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "products.tasks"
    label = "tasks"
    verbose_name = "Coding tasks"
