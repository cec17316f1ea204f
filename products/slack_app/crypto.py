"""Encryption at rest for Slack secrets (bot tokens), with Fernet.

The key comes from `settings.SLACK_TOKEN_ENCRYPTION_KEY`. Several comma-separated
keys may be given to rotate: the first encrypts, every one of them decrypts.
"""
from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.views.decorators.debug import sensitive_variables


class SecretUndecryptable(Exception):
    """The stored secret cannot be decrypted with the configured key(s) (the secret itself is never included)."""


@sensitive_variables()
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in str(settings.SLACK_TOKEN_ENCRYPTION_KEY).split(",") if k.strip()]
    return MultiFernet([Fernet(k) for k in keys])


@sensitive_variables()
def encrypt_json(value: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(value).encode()).decode()


@sensitive_variables()
def decrypt_json(ciphertext: str) -> dict[str, Any]:
    if not ciphertext:
        return {}
    try:
        return json.loads(_fernet().decrypt(ciphertext.encode()))
    except InvalidToken:
        raise SecretUndecryptable("stored Slack secret cannot be decrypted with SLACK_TOKEN_ENCRYPTION_KEY") from None
