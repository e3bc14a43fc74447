from google.colab._log import log


def unassign() -> None:
    """Colab's: release this runtime (the session ends). Here: noted in the log."""
    log("unassign")
