import json

import pytest

from negationclip.cli import main
from negationclip.evaluate import benchmarks as plugins
from negationclip.evaluate import registry as reg_mod
from negationclip.evaluate.images import ImageResolver
from negationclip.models import save, tiny_clip_bundle

PLUGIN = '''
from negationclip.evaluate.registry import Benchmark, Input


def _run(bundle, payload, inputs, ctx):
    words = open(inputs["word_file"], encoding="utf-8").read().split()
    return {"accuracy_official": len(words) / 10, "accuracy_strict": 0.0, "ties": 0,
            "total": len(words), "model": ctx.model_name}


BENCHMARK = Benchmark(name="word-count", title="word count (a test plug-in)",
                      summary="counts words", inputs=(Input("word_file", "a text file"),),
                      requires=("word_file",), run=_run, task="toy")
'''


@pytest.fixture
def extra_plugin(tmp_path, monkeypatch):
    """A benchmark added as one new module in the plug-in package, nothing else touched."""
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "word_count.py").write_text(PLUGIN)
    monkeypatch.setattr(plugins, "__path__", list(plugins.__path__) + [str(folder)])
    monkeypatch.setattr(reg_mod, "_REGISTRY", None)
    yield
    reg_mod._REGISTRY = None


def test_one_new_module_is_a_benchmark(extra_plugin, tmp_path, capsys):
    assert "word-count" in reg_mod.registry()
    assert main(["eval", "--list"]) == 0
    assert "word-count" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--word-file" in capsys.readouterr().out
    (tmp_path / "w.txt").write_text("one two three")
    save(tiny_clip_bundle(seed=0), tmp_path / "m")
    assert main(["eval", "--model", f"m={tmp_path / 'm'}", "--benchmark", "word-count",
                 "--word-file", str(tmp_path / "w.txt"), "--out", str(tmp_path / "o"),
                 "--no-charts", "--cache-dir", "none"]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["results"]["m"]["word-count"]["accuracy_official"] == pytest.approx(0.3)
    cb = json.loads((tmp_path / "o" / "clip_benchmark" / "word-count_m_en_toy.json").read_text())
    assert cb["task"] == "toy" and cb["metrics"]["total"] == 3
    assert main(["eval", "--model", "x", "--benchmark", "word-count", "--out", str(tmp_path / "p")]) == 2
    assert "needs --word-file" in capsys.readouterr().err


def test_shared_inputs_must_agree(monkeypatch):
    b = reg_mod.registry()
    a = b["negbench-mcq"]
    clash = reg_mod.Benchmark(name="x", title="x", summary="x", run=a.run,
                              inputs=(reg_mod.Input("negbench_images", "other help", type="dir"),))
    with pytest.raises(RuntimeError, match="declare input 'negbench_images' differently"):
        reg_mod._check_inputs({"negbench-mcq": a, "x": clash})


def test_image_resolver_by_trailing_components(tmp_path):
    root = tmp_path / "root"
    (root / "val2017").mkdir(parents=True)
    (root / "val2017" / "a.jpg").write_bytes(b"x")
    (root / "b.jpg").write_bytes(b"x")
    (root / "a.jpg").write_bytes(b"x")  # same name flat: the longer tail wins
    r = ImageResolver(root)
    assert r("/data/cluster/coco/val2017/a.jpg") == str(root / "val2017" / "a.jpg")
    assert r("/data/cluster/coco/val2017/b.jpg") == str(root / "b.jpg")
    assert r("C:\\\\data\\\\b.jpg") == str(root / "b.jpg")
    assert r("/x/../../c.jpg") == str(root / "c.jpg")  # not found: named under the root
    base = ImageResolver(None, tmp_path)
    assert base("rel/x.jpg") == str(tmp_path / "rel" / "x.jpg")
    assert base("/abs/x.jpg") == "/abs/x.jpg"
