import io

import pytest

from agent_sandbox.paths import REFERENCE_LIST, UnsafePath, reference_paths, safe_name
from agent_sandbox.workspace import add_upload, copy_my_files, job_workspace, prepare_workspace


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "a/../../b", "..", "", "  "])
def test_hostile_names_are_refused(bad):
    with pytest.raises(UnsafePath):
        safe_name(bad)


def test_names_are_cleaned_but_kept_readable():
    assert safe_name("données été.csv") == "données été.csv"
    assert safe_name("a\\b.csv") == "a/b.csv"
    assert safe_name("x<y>|z.csv") == "x_y__z.csv"


def test_uploads_stream_never_overwrite_and_respect_limits(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    first = add_upload(ws, "data.csv", io.BytesIO(b"1"))
    second = add_upload(ws, "data.csv", io.BytesIO(b"2"))
    assert first.read_bytes() == b"1" and second.name == "data_2.csv"
    with pytest.raises(ValueError):
        add_upload(ws, "huge.bin", io.BytesIO(b"x" * 100), max_bytes=10)
    assert not (ws / "huge.bin").exists()


def test_prepare_workspace_copies_uploads_and_my_files(tmp_path):
    my_files = tmp_path / "my_files"
    (my_files / "ref").mkdir(parents=True)
    (my_files / "ref" / "units.csv").write_text("u\n")
    (my_files / "data.csv").write_text("from my_files\n")
    (my_files / "link").symlink_to("/etc/passwd")
    upload = tmp_path / "data.csv"
    upload.write_text("uploaded\n")
    ws = prepare_workspace(tmp_path / "outputs", "job1", [upload], my_files)
    assert ws == tmp_path / "outputs" / "uploaded_files" / "job1"
    assert (ws / "data.csv").read_text() == "uploaded\n"       # uploads win
    assert (ws / "ref" / "units.csv").read_text() == "u\n"
    assert not (ws / "link").exists()
    # the agent learns which files are the lab's reference material: only the copies, not the upload
    assert reference_paths(ws) == {"ref/units.csv"}
    from agent_sandbox.agent.loop import list_workspace
    assert list_workspace(ws) == [{"path": "data.csv", "size": 9},
                                  {"path": "ref/units.csv", "size": 2, "reference": True}]
    # an upload cannot forge the list: its name loses the leading dot
    assert add_upload(ws, REFERENCE_LIST, io.BytesIO(b"data.csv\n")).name != REFERENCE_LIST
    assert reference_paths(ws) == {"ref/units.csv"}
    with pytest.raises(UnsafePath):
        job_workspace(tmp_path, "../x")
    assert copy_my_files(ws, None) == []


def test_name_clashes_between_files_and_folders_are_clear_errors(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    add_upload(ws, "runs", io.BytesIO(b"a file called runs"))
    with pytest.raises(ValueError, match="clashes"):
        add_upload(ws, "runs/day1.csv", io.BytesIO(b"x"))
    my_files = tmp_path / "my_files"
    (my_files / "runs").mkdir(parents=True)
    (my_files / "runs" / "ref.csv").write_text("r\n")
    assert copy_my_files(ws, my_files) == []           # the upload named runs wins
    assert (ws / "runs").read_bytes() == b"a file called runs"
