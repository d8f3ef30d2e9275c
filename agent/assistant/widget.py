"""A notebook widget over a session: look at any frame with its masks, click on it to add or correct an
object (ipywidgets for the controls, ipyevents for the clicks), and see the re-tracked result."""

from __future__ import annotations

import io

from agent.assistant.session import Session
from agent.errors import UserError


class ClickEditor:
    """`ClickEditor(session).widget` in a notebook cell. A click on the frame is a positive or negative
    point (the toggle) for the chosen object, or a new object when "new" is chosen."""

    def __init__(self, session: Session, frame: int = 0, width: int = 640):
        import ipywidgets as widgets
        from ipyevents import Event

        self.session = session
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px"))
        self.frame = widgets.IntSlider(value=frame, min=0, max=len(session.video) - 1, description="frame", continuous_update=False)
        self.sign = widgets.ToggleButtons(options=[("on the object (+)", 1), ("not on it (−)", 0)], value=1)
        self.target = widgets.Dropdown(description="object")
        self.status = widgets.HTML()
        self.frame.observe(lambda change: self.draw(), names="value")
        self._events = Event(source=self.image, watched_events=["click"])
        self._events.on_dom_event(lambda event: self.click(event["dataX"], event["dataY"]))
        self.widget = widgets.VBox([widgets.HBox([self.frame, self.target]), self.sign, self.image, self.status])
        self.reply = session.replies[-1] if session.replies else None
        self.draw()
        self.target.value = min(session.objects.objects, default=None)  # the first object until told otherwise

    def _refresh_targets(self) -> None:
        options = [("new", None)] + [(f"#{i} {o.description}", i) for i, o in sorted(self.session.objects.objects.items())]
        current = self.target.value
        self.target.options = options
        self.target.value = current if current in dict(options).values() else (options[1][1] if len(options) > 1 else None)

    def draw(self) -> None:
        """The chosen frame with the session's current masks."""
        self._refresh_targets()
        frame = self.session.video.frame(self.frame.value) if self.reply is None else self.reply.overlay(self.frame.value)
        buffer = io.BytesIO()
        frame.save(buffer, format="PNG")
        self.image.value = buffer.getvalue()

    def click(self, x: float, y: float):
        """What a click on the shown frame does (also callable from code): the session's reply."""
        self.status.value = "re-tracking…"
        try:
            self.reply = self.session.add_points(self.frame.value, [(x, y)], [self.sign.value], self.target.value)
        except UserError as error:  # a bad click is a message in the widget, not a traceback
            self.status.value = f"<b>{error}</b>"
            return None
        self.status.value = self.reply.answer
        self.draw()
        return self.reply
