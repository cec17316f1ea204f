"""`python manage.py update_quota_limits [--dry-run]`: recompute quota limits from usage now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from products.billing import quota_limiting as ql
from products.billing.recompute import RecomputeAlreadyRunning, update_all_orgs_billing_quotas


class Command(BaseCommand):
    help = (
        "Sum each organization's billable usage over its billing period, compare it with its "
        "allowance, and write the quota limits that changed (the Celery beat job, run by hand)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Show what would change; write nothing.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
        parser.add_argument("--verbose-changes", action="store_true", help="List every project change.")

    def handle(self, *args, dry_run: bool = False, no_progress: bool = False, verbose_changes: bool = False, **options):
        bar: tqdm | None = None

        def on_start(total: int) -> None:
            nonlocal bar
            bar = tqdm(total=total, unit="org", desc="Organizations", file=self.stderr._out, disable=no_progress)

        try:
            summary = update_all_orgs_billing_quotas(
                dry_run=dry_run, on_start=on_start, progress=lambda n: bar.update(n) if bar else None
            )
        except RecomputeAlreadyRunning as exc:
            raise CommandError(str(exc)) from exc
        except ql.QuotaStateUnavailable as exc:
            raise CommandError(f"Redis is unreachable, nothing was written: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()

        title = "Quota recomputation (dry run: nothing written)" if dry_run else "Quota recomputation"
        self.stdout.write(title)
        rows = summary.as_rows() + [("seconds", f"{summary.duration_seconds:.2f}")]
        width = max(len(name) for name, _ in rows)
        self.stdout.write("-" * (width + 12))
        for name, value in rows:
            self.stdout.write(f"{name:<{width}}  {value:>8}")
        self.stdout.write("-" * (width + 12))
        if verbose_changes or dry_run:
            verb = "would" if dry_run else ""
            for c in summary.changes[:200]:
                action = "lift" if c.new_score is None else f"set until {ql.to_datetime(c.new_score):%Y-%m-%d %H:%M}"
                self.stdout.write(f"  {verb} {action} {c.state} {c.resource} project #{c.project_id}: {c.reason}".replace("   ", " "))
            if len(summary.changes) > 200:
                self.stdout.write(f"  ... and {len(summary.changes) - 200} more")
        for alert in summary.alerts:
            self.stdout.write(f"  {'would alert' if dry_run else 'alerted'}: organization #{alert.organization_id} reached {alert.threshold}% of its AI credits")
        for failure in summary.failures:
            self.stderr.write(f"FAILED organization #{failure.organization_id}: {failure.error} (state left as it was)")
        if summary.failed:
            raise CommandError(f"{summary.failed} organization(s) could not be processed; see above.")
