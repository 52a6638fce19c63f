import pytest

from negationclip.utils import JsonlWriter, NegationClipError, load_json, read_jsonl


def test_torn_tail_is_dropped_and_cut_on_repair(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    with JsonlWriter(p) as w:  # opening for append repairs the file
        w.write({"a": 4})
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_whole_last_record_without_newline_is_kept(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    with JsonlWriter(p) as w:
        w.write({"a": 3})
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_malformed_line_and_json_name_file_and_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(NegationClipError, match=r"r.jsonl:2:"):
        read_jsonl(p)
    j = tmp_path / "x.json"
    j.write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(NegationClipError, match=r"x.json:3:"):
        load_json(j)
