# The durable inbox between the Slack webhook and Temporal (issue 10).
# Depends on H5's 0003 (OAuth fields) so the app's migrations stay one line; the lead may reorder them.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('slack_app', '0003_integration_oauth_lifecycle_home_tab'),
    ]

    operations = [
        migrations.CreateModel(
            name='MentionInbox',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slack_team_id', models.CharField(max_length=32)),
                ('event_id', models.CharField(max_length=64)),
                ('action', models.CharField(choices=[('start', 'Start the mention workflow'), ('deny_over_quota', 'Post the quota denial'), ('try_again', "Post 'try again shortly' (quota unknown, mode closed)")], max_length=20)),
                ('workflow_id', models.CharField(max_length=255)),
                ('event', models.JSONField(help_text='The app_mention event as Slack sent it (the workflow\'s input)')),
                ('channel', models.CharField(max_length=50)),
                ('thread_ts', models.CharField(max_length=50)),
                ('user', models.CharField(blank=True, default='', max_length=50)),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('done', 'Done'), ('failed', 'Failed')], default='pending', max_length=10)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('claimed_until', models.DateTimeField(blank=True, null=True)),
                ('processed_at', models.DateTimeField(blank=True, null=True)),
                ('result', models.CharField(blank=True, default='', max_length=20)),
                ('last_error', models.TextField(blank=True, default='')),
                ('integration', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='inbox', to='slack_app.integration')),
            ],
            options={
                'verbose_name': 'mention inbox row',
                'verbose_name_plural': 'mention inbox',
                'db_table': 'slack_app_mentioninbox',
                'ordering': ['id'],
                'indexes': [
                    models.Index(condition=models.Q(('state', 'pending')), fields=['id'], name='inbox_pending_idx'),
                    models.Index(condition=models.Q(('state', 'pending'), _negated=True), fields=['processed_at'], name='inbox_processed_idx'),
                ],
                'constraints': [models.UniqueConstraint(fields=('slack_team_id', 'event_id'), name='unique_inbox_event_per_workspace')],
            },
        ),
    ]
