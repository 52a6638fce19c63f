"""NegBench MCQ and retrieval on files in the released CSV layouts, against ports of
m1k2zoo/negbench benchmarks/src/evaluation/mcq.py (evaluate_model, evaluate_binary_mcq_model)
and retrieval.py (evaluate_model, recall_at_k, batchify), written here independently."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.cli import main
from negationclip.data.negbench import load_negbench_mcq, load_negbench_retrieval
from negationclip.evaluate.negbench import evaluate_negbench_mcq, evaluate_negbench_retrieval
from negationclip.models import ImageEmbeddingCache, image_features, save, text_features, tiny_clip_bundle
from negationclip.utils import NegationClipError

from .conftest import fabricate_image

CLUSTER = "/data/healthy-ml/scratch/kumail/projects/data/coco/val2017"
CAPTIONS = [
    ["This image features a dog, a ball.", "This image features a cat, but not a dog.",
     "This image features a cat.", "This image does not feature a dog."],
    ['A "quoted" café scene with tables.', "No chairs, only tables — really.",
     "Chairs and tables, 'side by side'.", "This image does not feature tables."],
    ["Ein Hund ohne Leine.", "Un chien sans laisse.", "犬はいない。", "There is a leash."],
    ["A kitchen with no oven.", "A kitchen with an oven, but no fridge.",
     "A kitchen with no oven.", "An oven."],  # options 0 and 2 identical: an exact tie
]


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def mcq_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("negbench")
    root = d / "images"
    rows = []
    for i in range(12):
        name = f"{i:012d}.jpg"
        # half keep the val2017/ folder, half are flat under the root
        fabricate_image((root / "val2017" / name) if i % 2 else (root / name), 40 + i, 32, name)
        caps = CAPTIONS[i % len(CAPTIONS)]
        rows.append([0, *caps, ("positive", "negative", "hybrid")[i % 3], f"{CLUSTER}/{name}"])
    header = ["correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
              "correct_answer_template", "image_path"]
    coco = _write_csv(d / "COCO_val_mcq_llama3.1_rephrased.csv", header, rows)
    synth = _write_csv(d / "synthetic_mcq_llama3.1_rephrased.csv", header, rows)
    binary = _write_csv(d / "binary_mcq.csv", ["image_path", "caption_0", "caption_1", "correct_answer"],
                        [[f"{CLUSTER}/{r[-1].rsplit('/', 1)[1]}", r[1], r[4], i % 2]
                         for i, r in enumerate(rows)])
    return d, root, coco, synth, binary


def _image_path(root, written):
    name = written.rsplit("/", 1)[1]
    return root / "val2017" / name if (root / "val2017" / name).exists() else root / name


def _ref_features(bundle, root, image_paths, captions):
    """Images and captions as NegBench encodes them (normalised; captions per option)."""
    with torch.no_grad():
        imgs = [Image.open(_image_path(root, p)).convert("RGB") for p in image_paths]
        image = F.normalize(image_features(bundle.model, bundle.transform(imgs)), dim=-1)
        texts = []
        for option in zip(*captions):  # NegBench tokenizes option by option across the batch
            tok = bundle.tokenizer(list(option))
            texts.append(F.normalize(text_features(bundle.model, tok.input_ids, tok.attention_mask), dim=-1))
    return image, torch.stack(texts)  # [B, D], [n, B, D]


def _ref_mcq(bundle, root, path, is_synthetic=False):
    """Port of NegBench mcq.py evaluate_model on one batch holding the whole file."""
    with open(path, newline="", encoding="utf-8") as f:
        df = list(csv.DictReader(f))
    image_features_, text_features_ = _ref_features(
        bundle, root, [r["image_path"] for r in df], [[r[f"caption_{i}"] for i in range(4)] for r in df])
    logits = torch.einsum("bf,nbf->bn", image_features_, text_features_)
    predicted_answer = torch.argmax(logits, dim=1)
    correct_answer = torch.tensor([int(r["correct_answer"]) for r in df])
    correct_answers_by_type = {"positive": 0, "negative": 0, "hybrid": 0}
    total_questions_by_type = {"positive": 0, "negative": 0, "hybrid": 0}
    if is_synthetic:
        wrong_answer_to_type = {0: "positive", 1: "hybrid", 2: "hybrid", 3: "negative"}
    else:
        wrong_answer_to_type = {1: "hybrid", 2: "positive", 3: "negative"}
    wrong_answer_counts = {k: 0 for k in wrong_answer_to_type.keys()}
    predictions_by_type = {"positive": 0, "negative": 0, "hybrid": 0}
    wrong_answers_by_question_type = {q: {"positive": 0, "negative": 0, "hybrid": 0}
                                      for q in ("positive", "negative", "hybrid")}
    correct_answers_sum = (predicted_answer == correct_answer).sum().item()
    for i in range(len(df)):
        answer_type = df[i]["correct_answer_template"]
        total_questions_by_type[answer_type] += 1
        if predicted_answer[i] == correct_answer[i]:
            correct_answers_by_type[answer_type] += 1
            predictions_by_type[answer_type] += 1
        else:
            wrong_answer_type = wrong_answer_to_type[predicted_answer[i].item()]
            wrong_answer_counts[predicted_answer[i].item()] += 1
            predictions_by_type[wrong_answer_type] += 1
            wrong_answers_by_question_type[answer_type][wrong_answer_type] += 1
    total_wrong_answers = sum(wrong_answer_counts.values())
    most_common = max(wrong_answer_counts, key=wrong_answer_counts.get)
    return {
        "total_accuracy": correct_answers_sum / len(df),
        **{f"{t}_accuracy": correct_answers_by_type[t] / total_questions_by_type[t]
           for t in ("positive", "negative", "hybrid")},
        "most_common_wrong_answer_type": wrong_answer_to_type[most_common],
        "wrong_answer_percentages": {wrong_answer_to_type[k]: (v / total_wrong_answers) * 100
                                     for k, v in wrong_answer_counts.items()},
        "predictions_by_type": predictions_by_type,
        "wrong_answers_by_question_type": wrong_answers_by_question_type,
    }, logits


@pytest.mark.parametrize("which", ["coco", "synthetic"])
def test_mcq_matches_released_evaluate_model(mcq_setup, tiny_bundle, which, tmp_path):
    d, root, coco, synth, _ = mcq_setup
    path = coco if which == "coco" else synth
    expected, logits = _ref_mcq(tiny_bundle, root, path, is_synthetic=which == "synthetic")
    res = evaluate_negbench_mcq(tiny_bundle, path, root, cache=ImageEmbeddingCache(tmp_path / "c"),
                                return_items=True)
    for k, v in expected.items():
        assert (res[k] == pytest.approx(v)) if isinstance(v, float) else res[k] == v, k
    assert res["wrong_answer_mapping"] == ("synthetic" if which == "synthetic" else "default")
    assert res["accuracy_official"] == res["total_accuracy"] == res["accuracy"]
    assert res["total"] == 12 and res["missing_images"] == 0
    # rows 3, 7, 11 have options 0 and 2 identical: a tie, won by the first (the answer)
    assert res["ties"] >= 3 and res["accuracy_strict"] <= res["accuracy_official"] - 3 / 12
    strict = sum(all(lg[0] > lg[j] for j in (1, 2, 3)) for lg in logits)
    assert res["correct_strict"] == strict


def test_binary_mcq(mcq_setup, tiny_bundle):
    d, root, _, _, binary = mcq_setup
    with open(binary, newline="", encoding="utf-8") as f:
        df = list(csv.DictReader(f))
    image, text = _ref_features(tiny_bundle, root, [r["image_path"] for r in df],
                                [[r["caption_0"], r["caption_1"]] for r in df])
    pred = torch.argmax(torch.einsum("bf,nbf->bn", image, text), dim=1)
    expected = (pred == torch.tensor([int(r["correct_answer"]) for r in df])).sum().item() / len(df)
    res = evaluate_negbench_mcq(tiny_bundle, binary, root)
    assert res["total_accuracy"] == pytest.approx(expected) and res["options"] == 2
    assert "positive_accuracy" not in res


def test_breakdown_needs_released_layout(mcq_setup, tiny_bundle, tmp_path):
    d, root, coco, _, _ = mcq_setup
    items = load_negbench_mcq(coco)
    for it in items[:4]:  # move the answer to index 3
        it.captions = it.captions[1:] + it.captions[:1]
        it.correct_answer = 3
    res = evaluate_negbench_mcq(tiny_bundle, items, root, source=str(coco))
    assert res["wrong_answer_percentages"] is None
    assert "correct_answer 0" in res["wrong_answer_breakdown"]
    assert res["positive_accuracy"] is not None


def test_missing_image_is_a_counted_miss(mcq_setup, tiny_bundle, tmp_path):
    d, root, coco, _, _ = mcq_setup
    text = coco.read_text(encoding="utf-8").replace("000000000005.jpg", "gone.jpg")
    p = tmp_path / "COCO_val_mcq_llama3.1_rephrased.csv"
    p.write_text(text, encoding="utf-8")
    res = evaluate_negbench_mcq(tiny_bundle, p, root, max_missing=0.2, missing_out=tmp_path / "m.txt")
    assert res["missing_images"] == 1 and res["skipped"] == 1 and res["total"] == 11
    assert "gone.jpg" in (tmp_path / "m.txt").read_text()
    with pytest.raises(NegationClipError, match="1 of 12 images missing"):
        evaluate_negbench_mcq(tiny_bundle, p, root)


# --- retrieval -------------------------------------------------------------------------------

RET_CAPTIONS = [
    ["A dog, running on grass.", 'A "happy" dog.'],
    ["A café with no people — quiet.", "Tables, chairs, no customers."],
    ["It's a cat that isn't sleeping."],
    ["A street without cars.", "Empty road, no traffic.", "Ruelle sans voitures."],
    ["A bowl of fruit with no bananas."],
    ["A bowl of fruit with no apples.", "Fruit, but no apples."],  # same image as the row above
]


@pytest.fixture(scope="module")
def ret_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("negbench_ret")
    root = d / "images"
    rows = []
    for i, caps in enumerate(RET_CAPTIONS):
        name = f"r{min(i, 4)}.jpg"
        fabricate_image(root / "val2017" / name, 36, 30, name)
        rows.append([f"{CLUSTER}/{name}", repr(caps)])
    path = _write_csv(d / "COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv",
                      ["filepath", "captions"], rows)
    return d, root, path


def _ref_recall_at_k(scores, positive_pairs, k):
    nb_texts, nb_images = scores.shape
    topk_indices = torch.topk(scores, k, dim=1)[1]
    nb_positive = positive_pairs.sum(dim=1)
    topk_indices_onehot = torch.nn.functional.one_hot(topk_indices, num_classes=nb_images)
    positive_pairs_reshaped = positive_pairs.view(nb_texts, 1, nb_images)
    nb_true_positive = (topk_indices_onehot * positive_pairs_reshaped).sum(dim=(1, 2))
    return nb_true_positive / nb_positive


def _ref_batchify(func, X, Y, batch_size, *args, **kwargs):
    results = []
    for start in range(0, len(X), batch_size):
        results.append(func(X[start:start + batch_size], Y[start:start + batch_size], *args, **kwargs))
    return torch.cat(results)


def test_retrieval_matches_released_retrieval_py(ret_setup, tiny_bundle):
    d, root, path = ret_setup
    import ast
    with open(path, newline="", encoding="utf-8") as f:
        df = list(csv.DictReader(f))
    texts = [ast.literal_eval(r["captions"]) for r in df]
    with torch.no_grad():
        imgs = [Image.open(_image_path(root, r["filepath"])).convert("RGB") for r in df]
        images_emb = F.normalize(image_features(tiny_bundle.model, tiny_bundle.transform(imgs)), dim=-1)
        flat = [t for ts in texts for t in ts]
        tok = tiny_bundle.tokenizer(flat)
        texts_emb = F.normalize(text_features(tiny_bundle.model, tok.input_ids, tok.attention_mask), dim=-1)
    texts_image_index = [i for i, ts in enumerate(texts) for _ in ts]
    scores = texts_emb @ images_emb.t()
    positive_pairs = torch.zeros_like(scores, dtype=bool)
    positive_pairs[torch.arange(len(scores)), texts_image_index] = True
    expected = {}
    for k in (1, 5):
        expected[f"image_retrieval_recall@{k}"] = (_ref_batchify(_ref_recall_at_k, scores, positive_pairs, 4, k=k) > 0).float().mean().item()
        expected[f"text_retrieval_recall@{k}"] = (_ref_batchify(_ref_recall_at_k, scores.T, positive_pairs.T, 4, k=k) > 0).float().mean().item()
    res = evaluate_negbench_retrieval(tiny_bundle, path, root)
    for k, v in expected.items():
        assert res[k] == pytest.approx(v), k
    assert res["images"] == 6 and res["texts"] == len(flat) and res["missing_images"] == 0
    assert res["headline_metric"] == "image_retrieval_recall@1"


def test_caption_cells_are_literals_never_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = [("A dog.", "not a Python list literal"),
           ("['a', 1]", "should be a list of strings"),
           (f"__import__('os').system('touch {marker}')", "not a Python list literal"),
           ("{'a': 'b'}", "should be a list of strings")]
    for cell, msg in bad:
        p = _write_csv(tmp_path / "r.csv", ["filepath", "captions"],
                       [["/x/a.jpg", "['fine']"], ["/x/b.jpg", cell]])
        with pytest.raises(NegationClipError, match=rf"r\.csv: row 3: captions .*{msg}"):
            load_negbench_retrieval(p)
    assert not marker.exists()


@pytest.mark.parametrize("header,row,msg", [
    (["image_path", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer"],
     ["a.jpg", "a", "b", "c", "d", "0"], "missing column.*correct_answer_template"),
    (["image_path", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer",
      "correct_answer_template"], ["a.jpg", "a", "b", "c", "d", "4", "positive"],
     r"row 2: correct_answer '4' should be an integer 0\.\.3"),
    (["image_path", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer",
      "correct_answer_template"], ["a.jpg", "a", "b", "c", "d", "x", "positive"],
     r"row 2: correct_answer 'x'"),
    (["image_path", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer",
      "correct_answer_template"], ["a.jpg", "a", "b", "c", "d", "1", "affirmation"],
     r"row 2: correct_answer_template 'affirmation'"),
    (["image_path", "caption_0", "caption_1", "correct_answer"], ["a.jpg", "a", "b", "2"],
     r"row 2: correct_answer '2' should be an integer 0\.\.1"),
])
def test_mcq_bad_input(tmp_path, header, row, msg):
    p = _write_csv(tmp_path / "m.csv", header, [row])
    with pytest.raises(NegationClipError, match=r"m\.csv: .*" + msg):
        load_negbench_mcq(p)


def test_empty_files(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(NegationClipError, match=r"e\.csv: empty file"):
        load_negbench_mcq(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("filepath,captions\n")
    with pytest.raises(NegationClipError, match=r"h\.csv: no data rows"):
        load_negbench_retrieval(tmp_path / "h.csv")


def test_cli_bad_file_exit_2_others_finish(mcq_setup, ret_setup, tmp_path, capsys):
    d, root, coco, _, _ = mcq_setup
    _, rroot, rpath = ret_setup
    save(tiny_clip_bundle(seed=0), tmp_path / "m")
    bad = _write_csv(tmp_path / "bad_mcq.csv", ["image_path", "caption_0", "caption_1", "caption_2",
                                                "caption_3", "correct_answer", "correct_answer_template"],
                     [["a.jpg", "a", "b", "c", "d", "7", "positive"]])
    out = tmp_path / "out"
    rc = main(["eval", "--model", f"m={tmp_path / 'm'}", "--benchmark", "negbench-mcq",
               "--negbench-mcq", str(bad), "--benchmark", "negbench-retrieval",
               "--negbench-retrieval", str(rpath), "--negbench-images", str(rroot),
               "--out", str(out), "--cache-dir", "none", "--no-charts"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad_mcq.csv: row 2: correct_answer '7'" in err
    res = json.loads((out / "results.json").read_text())
    assert list(res["results"]["m"]) == ["negbench-retrieval:" + rpath.stem]
    assert "negbench-mcq" in res["errors"]["m"]
    assert not list((out / "clip_benchmark").glob("negbench-mcq*"))
    # both MCQ files in one run, keyed by file stem; --negbench-images resolves cluster paths
    rc = main(["eval", "--model", f"m={tmp_path / 'm'}", "--benchmark", "negbench-mcq",
               "--negbench-mcq", str(coco), "--negbench-mcq", str(d / "synthetic_mcq_llama3.1_rephrased.csv"),
               "--negbench-images", str(root), "--out", str(tmp_path / "o2"), "--cache-dir", "none",
               "--no-charts"])
    assert rc == 0
    res = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert list(res["results"]["m"]) == ["negbench-mcq:COCO_val_mcq_llama3.1_rephrased",
                                         "negbench-mcq:synthetic_mcq_llama3.1_rephrased"]
    md = (tmp_path / "o2" / "results.md").read_text()
    assert "positive_accuracy (%)" in md
