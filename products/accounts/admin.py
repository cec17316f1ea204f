"""Admin for organizations, projects, memberships and personal API keys.

A personal API key's value is shown once, on the page that answers the form that
created (or regenerated) it; it is never stored in a message cookie or the session, and
the stored hash is never shown.
Accounts knows nothing of billing: the billing slice replaces the project admin with a
subclass of `ProjectAdmin` (from the facade) that adds the quota state and AI-credit
actions through `extra_detail_fields` and `actions`.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .api_keys import ALL_SCOPES, validate_scopes
from .models import Organization, OrganizationMembership, PersonalAPIKey, Project

SCOPE_HELP = {
    "*": "everything",
}


# --- Organizations, projects, memberships ----------------------------------------------------


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ["name", "api_token", "created_at"]
    readonly_fields = ["api_token", "created_at"]
    show_change_link = True


class MembershipInline(admin.TabularInline):
    model = OrganizationMembership
    extra = 0
    fields = ["user", "level", "joined_at"]
    readonly_fields = ["joined_at"]
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "project_count", "member_count", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    inlines = [ProjectInline, MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(_projects=Count("projects", distinct=True), _members=Count("memberships", distinct=True))
        )

    @admin.display(description="projects", ordering="_projects")
    def project_count(self, obj: Organization) -> int:
        return obj._projects

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Organization) -> int:
        return obj._members


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Projects; other products extend it (subclass, unregister, register) rather than accounts importing them."""

    list_display = ["id", "name", "organization", "api_token", "created_at"]
    list_select_related = ["organization"]
    list_filter = ["organization"]
    search_fields = ["name", "api_token", "organization__name"]
    autocomplete_fields = ["organization"]
    # Read-only fields a subclass adds to an existing project's page (e.g. billing's quota state).
    extra_detail_fields: tuple[str, ...] = ()

    def get_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        if obj is None:
            return ["organization", "name"]
        return ["organization", "name", "api_token", "created_at", *self.extra_detail_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        if obj is None:
            return []
        return ["api_token", "created_at", *self.extra_detail_fields]


@admin.register(OrganizationMembership)
class OrganizationMembershipAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "organization", "level", "joined_at"]
    list_filter = ["level"]
    list_select_related = ["user", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]
    readonly_fields = ["joined_at"]


# --- Personal API keys --------------------------------------------------------------------------


class ScopesField(forms.MultipleChoiceField):
    """Scopes as checkboxes; an unknown scope gets an error naming the valid ones."""

    def __init__(self, **kwargs):
        super().__init__(
            choices=[(scope, f"{scope} ({SCOPE_HELP[scope]})" if scope in SCOPE_HELP else scope) for scope in ALL_SCOPES],
            widget=forms.CheckboxSelectMultiple,
            error_messages={
                "invalid_choice": "Unknown scope %(value)s; valid scopes are: " + ", ".join(ALL_SCOPES) + ".",
                "required": "Choose at least one scope.",
            },
            help_text="A write scope includes the matching read scope; * grants everything.",
            **kwargs,
        )

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        unknown = validate_scopes(value)
        if unknown:
            raise forms.ValidationError(
                "Unknown scope(s) %(unknown)s; valid scopes are: %(valid)s.",
                params={"unknown": ", ".join(unknown), "valid": ", ".join(ALL_SCOPES)},
                code="invalid_choice",
            )


class PersonalAPIKeyForm(forms.ModelForm):
    scopes = ScopesField()

    class Meta:
        model = PersonalAPIKey
        fields = ["user", "label", "scopes", "scoped_organizations", "scoped_projects"]


class KeyCreatedResponseMixin:
    """Render the page that shows freshly generated key values, once."""

    def render_new_keys(self, request: HttpRequest, keys: list[tuple[PersonalAPIKey, str]]) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Copy the new key now" if len(keys) == 1 else "Copy the new keys now",
            "opts": self.model._meta,
            "keys": keys,
        }
        response = TemplateResponse(request, "admin/accounts/personalapikey/key_created.html", context)
        # The page holds a secret: no browser or proxy may keep it.
        response["Cache-Control"] = "no-store"
        return response


@admin.register(PersonalAPIKey)
class PersonalAPIKeyAdmin(KeyCreatedResponseMixin, admin.ModelAdmin):
    form = PersonalAPIKeyForm
    list_display = ["id", "label", "user", "mask_value", "scopes", "created_at", "last_used_at"]
    list_select_related = ["user"]
    list_filter = ["created_at", "last_used_at"]
    search_fields = ["label", "mask_value", "user__username", "user__email"]
    autocomplete_fields = ["user"]
    filter_horizontal = ["scoped_organizations", "scoped_projects"]
    actions = ["regenerate_keys"]

    def get_fields(self, request: HttpRequest, obj: PersonalAPIKey | None = None) -> list[str]:
        editable = ["label", "scopes", "scoped_organizations", "scoped_projects"]
        if obj is None:
            return ["user", *editable]
        return ["user", *editable, "mask_value", "created_at", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: PersonalAPIKey | None = None) -> list[str]:
        if obj is None:
            return []
        # The owner of an existing key is fixed: give the other user a key of their own.
        return ["user", "mask_value", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: PersonalAPIKey, form, change: bool) -> None:
        if not change:
            # Kept on the request only until response_add renders it; never saved in clear.
            request._new_personal_api_key_value = obj.set_new_value()
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: PersonalAPIKey, post_url_continue=None):
        value = getattr(request, "_new_personal_api_key_value", None)
        if value is None:  # pragma: no cover - save_model always sets it for a new key
            return super().response_add(request, obj, post_url_continue)
        return self.render_new_keys(request, [(obj, value)])

    @admin.action(description="Regenerate the selected keys (the old values stop working)", permissions=["change"])
    def regenerate_keys(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse:
        keys = []
        for key in queryset.select_related("user"):
            value = key.set_new_value()
            key.save(update_fields=["secure_value", "mask_value"])
            keys.append((key, value))
        return self.render_new_keys(request, keys)
