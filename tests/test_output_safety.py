"""Overwriting replaces only an earlier output of ours: a person's own folder is refused, never emptied."""

import json

import numpy as np
import pytest

from agent.assistant.chat import run_chat
from agent.reply import Reply
from agent.errors import UserError
from agent.video import VideoSource
from agent.writers import SegmentationWriter
from conftest import run_cli


def users_folder(path):
    """A folder of someone's own files (one nested), as `~/Documents` might be."""
    (path / "notes").mkdir(parents=True)
    (path / "notes.txt").write_bytes(b"my notes\n\x00\xff")
    (path / "notes" / "draft.md").write_text("draft")
    (path / "result.json").write_text(json.dumps({"mine": True}))
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def unchanged(path, before):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before


def small_reply(frames=3):
    video = VideoSource.open([np.full((12, 16, 3), 40 * t, np.uint8) for t in range(frames)])
    reply = Reply("the square", "Here it is.", video, objects={1: "the square"}, keyframes=[0])
    for _ in range(frames):
        mask = np.zeros((12, 16), bool)
        mask[2:6, 3:9] = True
        reply.add_frame({1: mask})
    return reply


def test_segment_overwrite_refuses_a_users_folder_before_loading_a_model(capsys, frames_dir, tmp_path, monkeypatch):
    import agent.backends

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the output folder was checked")

    monkeypatch.setattr(agent.backends, "load_backend", no_model)
    out = tmp_path / "Documents"
    before = users_folder(out)
    code, stdout, stderr = run_cli(capsys, "segment", frames_dir, "the red square", "--backend", "lite", "--overwrite", "--out", out)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("rvos: error: ")
    assert "not an earlier rvos output" in stderr and "notes" in stderr and "Traceback" not in stderr
    assert unchanged(out, before) and sorted(p.name for p in tmp_path.iterdir()) == ["Documents", "frames"]


def test_segment_overwrite_replaces_an_earlier_output(capsys, frames_dir, tmp_path):
    from agent.backends.lite import weights

    if weights.unavailable_reason():
        pytest.fail("lite weights missing; `make test` fetches them")
    out = tmp_path / "out"
    small_reply().save(out)  # an earlier output (of "the square")
    code, _, stderr = run_cli(capsys, "segment", frames_dir, "the red square", "--backend", "lite", "--overwrite", "--out", out)
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["instruction"] == "the red square" and result["backend"] == "lite"
    assert result["input"] == str(frames_dir) and len(result["frames"]) == 3
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]  # nothing left beside it


def test_save_refuses_a_users_folder(tmp_path):
    out = tmp_path / "Documents"
    before = users_folder(out)
    with pytest.raises(UserError, match=r"not an earlier rvos output \(e\.g\. notes\)"):
        small_reply().save(out, overwrite=True)
    assert unchanged(out, before) and sorted(p.name for p in tmp_path.iterdir()) == ["Documents"]


@pytest.mark.parametrize("extra", ["masks/holiday.jpg", "masks/00007.png", "trace/photo.jpg", "masks/sub/00000.png"])
def test_save_refuses_an_earlier_output_with_a_users_file_in_it(tmp_path, extra):
    out = tmp_path / "out"
    small_reply().save(out)
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_bytes(b"not ours")
    with pytest.raises(UserError, match="not an earlier rvos output"):
        small_reply().save(out, overwrite=True)
    assert (out / extra).read_bytes() == b"not ours" and (out / "result.json").is_file()


def test_save_replaces_an_earlier_output_and_an_empty_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    small_reply(frames=3).save(out)  # empty: fine without overwrite
    small_reply(frames=2).save(out, overwrite=True)
    assert len(json.loads((out / "result.json").read_text())["frames"]) == 2
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_checks_again_when_the_output_is_moved_into_place(tmp_path):
    """The folder may change while a long video is segmented: a file a person puts there meanwhile stays."""
    out = tmp_path / "out"
    reply = small_reply()
    reply.save(out)
    with pytest.raises(UserError, match=r"not an earlier rvos output \(e\.g\. later\.txt\)"):
        with SegmentationWriter(out, reply.video, "again", overwrite=True, overlay=False) as writer:
            for index, _ in reply.video.frames():
                writer.write_empty(index)
            (out / "later.txt").write_text("written during the run")
            writer.finish({"instruction": "again", "objects": []})
    assert (out / "later.txt").read_text() == "written during the run"
    assert json.loads((out / "result.json").read_text())["instruction"] == "the square"  # the earlier output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the temporary folder is gone


class OneReply:
    """Just what `/save` reads of a session: its replies (the reply is a real one)."""

    def __init__(self, reply):
        self.replies = [reply]


def test_chat_save_refuses_a_users_folder(tmp_path):
    out = tmp_path / "Documents"
    before = users_folder(out)
    printed = []
    run_chat(OneReply(small_reply()), lines=[f"/save {out}", f"/save {tmp_path / 'new'}"], out=printed.append)
    assert printed[0].startswith(f"rvos> error: output folder {out} holds files that are not an earlier rvos output")
    assert unchanged(out, before)
    assert printed[1] == f"saved: {tmp_path / 'new'}" and (tmp_path / "new" / "result.json").is_file()
    printed.clear()
    run_chat(OneReply(small_reply(frames=2)), lines=[f"/save {tmp_path / 'new'}"], out=printed.append)  # ours: replaced
    assert printed == [f"saved: {tmp_path / 'new'}"]
    assert len(json.loads((tmp_path / "new" / "result.json").read_text())["frames"]) == 2
