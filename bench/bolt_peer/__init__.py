"""The baseline for bench/slack_webhook.py: a slack_bolt Django-adapter app that only verifies and acks."""
