"""Colab's secrets (the key icon): asked for by name, granted per notebook."""

import json
import os


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(key: str) -> str:
    secrets = json.loads(os.environ.get("FAKE_COLAB_SECRETS") or "{}")
    if key not in secrets:
        raise SecretNotFoundError(f"Secret {key} does not exist.")
    if secrets[key] is None:
        raise NotebookAccessError(f"Notebook does not have access to secret {key}")
    return secrets[key]
