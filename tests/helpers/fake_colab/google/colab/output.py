def enable_custom_widget_manager() -> None:
    pass


def disable_custom_widget_manager() -> None:
    pass


def clear(wait: bool = False, output_tags=()) -> None:
    pass


def eval_js(script: str, ignore_result: bool = False, timeout_sec=None):
    return None
