"""The list reader every list file goes through (CULane, CurveLanes, category lists, the tools) and
the text reader of the format readers."""
import os

import pytest

from srlane.data.records import DataFormatError, ListEntry, read_list, read_text


def test_read_list_numbers_lines_strips_the_leading_slash_and_keeps_the_other_fields(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("/d/a.jpg /mask/a.png 1 0\n\n  \nd/b.jpg\t\n", encoding="utf-8")
    assert read_list(path) == [ListEntry(1, "d/a.jpg", ["/mask/a.png", "1", "0"], None),
                               ListEntry(4, "d/b.jpg", [], None)]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"list.txt:4: image not found: .*b\.jpg") as info:
        read_list(path, tmp_path)
    assert info.value.line == 4
    (tmp_path / "d" / "b.jpg").write_bytes(b"")
    entries = read_list(path, os.path.relpath(tmp_path))
    assert [e.path for e in entries] == [str(tmp_path / "d" / "a.jpg"), str(tmp_path / "d" / "b.jpg")]


def test_files_that_are_not_utf8_text_stop_with_one_line_naming_them(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.jpg\n\xff\xfe.jpg\n")
    with pytest.raises(DataFormatError, match=r"list.txt: not UTF-8 text \(byte 6\)"):
        read_list(path)
    with pytest.raises(DataFormatError, match=r"list.txt: not UTF-8 text \(byte 6\)"):
        read_text(path)
