"""Krita actions (bindable to shortcuts in Settings ▸ Configure Krita ▸ Keyboard Shortcuts)."""

from krita import Extension, Krita

from . import deps

ACTIONS = (
    ("editgan_analyze", "EditGAN: Analyze layer", "analyze"),
    ("editgan_apply_edit", "EditGAN: Apply edit", "apply_edit"),
    ("editgan_cancel", "EditGAN: Cancel", "cancel"),
)


class EditGANExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        """Connect early so the docker shows a live status the moment a window opens."""
        if not deps.problem:
            notifier = Krita.instance().notifier()
            notifier.setActive(True)
            notifier.windowCreated.connect(_controller)

    def createActions(self, window):
        for action_id, text, method in ACTIONS:
            action = window.createAction(action_id, text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, m=method: _run(m))


def _controller():
    from .controller import shared  # needs pyzmq: imported only when deps are present
    return shared()


def _run(method: str) -> None:
    if deps.problem:
        from .document import show_floating_message
        show_floating_message(deps.problem, error=True)
        return
    getattr(_controller(), method)()
