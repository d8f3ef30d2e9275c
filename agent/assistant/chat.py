"""`rvos chat VIDEO`: a conversation in the terminal (line editing and history where readline exists).

Commands: /save DIR, /show (writes and opens the last reply's overlay), /mode auto|direct|reasoning|planner,
/trace, /reset, /quit; /describe ID [QUESTION] (words about an object), /caption (a grounded caption); visual prompts: /point X,Y[,+|-][@FRAME] [ID] (clicks, several separated by
spaces), /box X0,Y0,X1,Y1[@FRAME] [ID] (a new object, or a correction of object ID), /remove ID,
/objects. Works with piped input (each line is one turn), which is how tests drive it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.assistant.session import MODES, Session
from agent.pipeline import DEFAULT_MODE
from agent.errors import UserError
from agent.visual_syntax import parse_box, parse_point

HELP = ("commands: /save DIR  /show  /mode auto|direct|reasoning|planner  /trace  /reset  /quit  /describe ID [QUESTION]  /caption\n"
        "          /point X,Y[,+|-][@FRAME] … [ID]  /box X0,Y0,X1,Y1[@FRAME] [ID]  /remove ID  /objects")


def _line_editing() -> None:
    try:
        import readline  # noqa: F401  (importing it gives input() editing and history)
    except ImportError:
        pass


def _show(session: Session, out=print) -> None:
    reply = session.replies[-1]
    folder = Path(tempfile.mkdtemp(prefix="rvos-chat-"))
    path = reply.save(folder / "reply") / "overlay.mp4"
    opener = shutil.which("xdg-open") or shutil.which("open")
    if opener and sys.stdout.isatty():
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out(f"overlay: {path}")


def _object_id(words: list[str]) -> int | None:
    """A trailing object id (`3` or `#3`) after the prompt's coordinates."""
    if len(words) > 1 and words[-1].lstrip("#").isdigit():
        return int(words.pop().lstrip("#"))
    return None


def _visual(session: Session, command: str, argument: str):
    words = argument.split()
    if command == "/remove":
        if len(words) != 1 or not words[0].lstrip("#").isdigit():
            raise UserError("/remove ID: the id of the object to forget (see /objects)")
        return session.remove(int(words[0].lstrip("#")))
    object_id = _object_id(words)
    if not words:
        raise UserError(f"{command} needs coordinates; {HELP}")
    if command == "/box":
        frame, box = parse_box(words[0])
        return session.add_box(frame, box, object_id)
    clicks = [parse_point(word) for word in words]
    frames = {frame for frame, _, _ in clicks}
    if len(frames) > 1:
        raise UserError("/point: give the clicks of one frame at a time")
    return session.add_points(frames.pop(), [p for _, p, _ in clicks], [label for _, _, label in clicks], object_id)


def _objects(reply) -> str:
    return ", ".join(f"#{i} {d}" for i, d in sorted(reply.objects.items())) or "no objects"


def run_chat(session: Session, mode: str = DEFAULT_MODE, lines=None, out=print) -> int:
    """Read turns from `lines` (default: standard input) until /quit or the end of input."""
    interactive = lines is None and sys.stdin.isatty()
    if interactive:
        _line_editing()
        out(f"rvos chat — {session.video!r}\n{HELP}")
    source = iter(lines) if lines is not None else None
    while True:
        try:
            line = (input("you> ") if interactive else next(source) if source else sys.stdin.readline())
        except (EOFError, StopIteration):
            break
        if line == "" and not interactive and source is None:
            break  # end of piped input
        line = line.strip()
        if not line:
            continue
        command, _, argument = line.partition(" ")
        try:
            if command in ("/quit", "/exit"):
                break
            if command == "/reset":
                session.reset()
                out("(conversation reset)")
            elif command == "/mode":
                if argument not in MODES:
                    raise UserError(f"/mode takes one of {', '.join(MODES)}")
                mode = argument
                out(f"(mode: {mode})")
            elif command == "/save":
                if not session.replies or not argument:
                    raise UserError("/save DIR saves the last reply: ask something first, and give a folder")
                out(f"saved: {session.replies[-1].save(argument.strip(), overwrite=True)}")
            elif command == "/show":
                if not session.replies:
                    raise UserError("/show needs a reply: ask something first")
                _show(session, out)
            elif command == "/trace":
                for step in session.replies[-1].trace if session.replies else []:
                    out(f"  {step}")
            elif command in ("/point", "/box", "/remove"):
                reply = _visual(session, command, argument)
                out(f"rvos> {reply.answer}\n      [{_objects(reply)}]")
            elif command == "/describe":
                number, _, asked = argument.strip().partition(" ")
                if not number.lstrip("#").isdigit():
                    raise UserError("/describe ID [QUESTION]: the id of the object (see /objects), then what to ask about it")
                out(f"rvos> {session.describe(int(number.lstrip('#')), asked.strip() or None).answer}")
            elif command == "/caption":
                reply = session.caption()
                out(f"rvos> {reply.answer}\n      [{_objects(reply)}]")
            elif command == "/objects":
                out("      " + (", ".join(f"#{i} {o.description}" for i, o in sorted(session.objects.objects.items())) or "no objects yet"))
            elif command.startswith("/"):
                raise UserError(f"unknown command {command}; {HELP}")
            else:
                reply = session.ask(line, mode=mode)
                out(f"rvos> {reply.answer}\n      [{_objects(reply)}]")
        except UserError as exc:
            out(f"rvos> error: {exc}")
    return 0
