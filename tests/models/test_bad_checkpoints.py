"""A TorchScript-like zip whose pickle names an unexpected persistent id is a clear error
(it used to be a bare AssertionError), through the API and the CLI."""

import io
import pickle
import zipfile

import pytest

from negationclip.cli import main
from negationclip.models.convert import read_checkpoint
from negationclip.utils import NegationClipError


class _PidPickler(pickle.Pickler):
    def __init__(self, f, pid):
        super().__init__(f, protocol=2)
        self._pid = pid

    def persistent_id(self, obj):
        return self._pid if isinstance(obj, _Marker) else None


class _Marker:
    pass


def _script_zip(path, pid):
    buf = io.BytesIO()
    _PidPickler(buf, pid).dump({"weight": _Marker()})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/constants.pkl", pickle.dumps(()))
        zf.writestr("archive/code/__torch__.py", "")
    return path


@pytest.mark.parametrize("pid", [("module", "x"), ("storage", "float", 0, "cpu", 4),
                                 ("storage", 5, "0", "cpu", 4), "just-a-string"])
def test_unexpected_persistent_id_is_a_clear_error(tmp_path, pid, capsys):
    path = _script_zip(tmp_path / "bad.pt", pid)
    with pytest.raises(NegationClipError, match="bad.pt: .*(persistent id|storage type)"):
        read_checkpoint(path)
    assert main(["convert", "--input", str(path), "--output", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pt" in err
    assert not (tmp_path / "hf").exists()


def test_a_zip_with_a_missing_storage_file_is_a_clear_error(tmp_path):
    import torch
    path = _script_zip(tmp_path / "bad.pt", ("storage", torch.float32, "0", "cpu", 4))
    with pytest.raises(NegationClipError, match="bad.pt: (not a readable|refused)"):
        read_checkpoint(path)
