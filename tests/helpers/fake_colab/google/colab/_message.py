class MessageError(RuntimeError):
    """What Colab raises when the frontend answers a request with an error (e.g. Drive access refused)."""
