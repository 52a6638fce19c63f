"""CC-Neg and SugarCREPE against ports of the released evaluation code, written here:
CoN-CLIP's src/data/evaluation_datasets.py (CCNegEvalDataset) + its README loop, and
CLIP_benchmark's datasets/sugar_crepe.py + metrics/image_caption_selection.py."""

import json
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negationclip.cli import main
from negationclip.data.ccneg import load_ccneg
from negationclip.evaluate.ccneg import evaluate_ccneg
from negationclip.evaluate.sugarcrepe import evaluate_sugarcrepe
from negationclip.models import image_features, save, text_features, tiny_clip_bundle
from negationclip.utils import NegationClipError

from .conftest import fabricate_image

PREFIX = "/workspace/datasets/cc3m/"
CAPS = [("a dog on a beach, at sunset", "a dog on a beach, not at sunset"),
        ("a café with tables", "a café with no tables, only chairs"),
        ('a "red" car', "a car that isn't red"),
        ("two cats, sleeping", "two cats, sleeping"),  # differ: only the negative loses its comma
        ("a kitchen", "a kitchen,"),  # identical once CoN-CLIP removes the comma: an exact tie
        ("Ein Hund", "Kein Hund"),
        ("a tree with leaves", "a tree without leaves"),
        ("犬がいる", "犬がいない")]


@pytest.fixture(scope="module")
def ccneg_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ccneg")
    root = d / "ccneg_images"
    paths, annos = [], []
    for i, (cap, neg) in enumerate(CAPS):
        rel = f"cc3m_subset_images_extracted_final/img{i}.jpg"
        fabricate_image(root / rel, 44, 36, rel)
        paths.append(PREFIX + rel)
        annos.append({"json": {"caption": cap, "key": f"{i:09d}"},
                      "sop_data": {"negative-prompt": neg, "subject": "x"}})
    pt = d / "ccneg_preprocessed.pt"
    torch.save({"image_paths": paths, "annotations": annos}, pt)
    return d, root, pt, paths, annos


def _ref_ccneg(bundle, root, pt, split_size):
    """CCNegEvalDataset (prefix replaced by the root, the last split_size items, commas removed
    from the negative prompt) and the README evaluation loop (argmax over [true, negated])."""
    data = torch.load(pt)
    image_paths = [p.replace("/workspace/datasets/cc3m/", str(root) + "/") for p in data["image_paths"]]
    annotations = data["annotations"]
    image_paths, annotations = image_paths[-split_size:], annotations[-split_size:]
    with torch.no_grad():
        images = bundle.transform([Image.open(p).convert("RGB") for p in image_paths])
        true_captions = [a["json"]["caption"] for a in annotations]
        negated_captions = [a["sop_data"]["negative-prompt"].replace(",", "") for a in annotations]
        image_features_ = F.normalize(image_features(bundle.model, images), dim=-1)
        t = bundle.tokenizer(true_captions)
        n = bundle.tokenizer(negated_captions)
        true_f = F.normalize(text_features(bundle.model, t.input_ids, t.attention_mask), dim=-1)
        neg_f = F.normalize(text_features(bundle.model, n.input_ids, n.attention_mask), dim=-1)
        logit_scale = bundle.model.logit_scale
        sim_true = torch.diag(logit_scale * image_features_ @ true_f.T).view(-1, 1)
        sim_neg = torch.diag(logit_scale * image_features_ @ neg_f.T).view(-1, 1)
        preds = torch.cat([sim_true, sim_neg], dim=1).argmax(dim=-1)
    return (preds == 0).sum().item() / len(preds), sim_true.flatten(), sim_neg.flatten()


@pytest.mark.parametrize("split", [8, 5])
def test_ccneg_matches_conclip_loop(ccneg_setup, tiny_bundle, split):
    d, root, pt, _, _ = ccneg_setup
    expected, st, sn = _ref_ccneg(tiny_bundle, root, pt, split)
    res = evaluate_ccneg(tiny_bundle, pt, root, eval_size=split)
    assert res["accuracy_official"] == pytest.approx(expected) and res["total"] == split
    assert res["accuracy"] == res["accuracy_official"] and res["first_index"] == 8 - split
    # "a kitchen" vs "a kitchen," -> identical texts, bit-equal in the released loop too
    assert res["ties"] == int((st == sn).sum()) >= (1 if split == 8 else 0)
    assert res["correct_strict"] == int((st > sn).sum())
    assert res["correct"] == res["correct_strict"] + res["ties"]


def test_ccneg_json_and_jsonl_give_the_same(ccneg_setup, tiny_bundle, tmp_path):
    d, root, pt, paths, annos = ccneg_setup
    base = evaluate_ccneg(tiny_bundle, pt, root, eval_size=0)
    (tmp_path / "c.json").write_text(json.dumps({"image_paths": paths, "annotations": annos}))
    (tmp_path / "c.jsonl").write_text("".join(
        json.dumps({"image_path": p, "caption": a["json"]["caption"],
                    "negative_prompt": a["sop_data"]["negative-prompt"]}, ensure_ascii=False) + "\n"
        for p, a in zip(paths, annos)), encoding="utf-8")
    for f in ("c.json", "c.jsonl"):
        r = evaluate_ccneg(tiny_bundle, tmp_path / f, root, eval_size=0)
        assert (r["correct"], r["correct_strict"], r["ties"], r["total"]) == \
            (base["correct"], base["correct_strict"], base["ties"], base["total"])
    assert load_ccneg(tmp_path / "c.jsonl", eval_size=3)[0].index == 5


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_ccneg_refuses_code_and_garbage(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"image_paths": ["a.jpg"], "annotations": [_Evil()]}, f)
    with pytest.raises(NegationClipError, match=r"evil\.pt: cannot read"):
        load_ccneg(evil)
    assert not _Evil.marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(NegationClipError, match=r"junk\.pt: cannot read"):
        load_ccneg(tmp_path / "junk.pt")
    torch.save({"image_paths": ["a.jpg"], "annotations": [{"json": {"caption": "x"}}]}, tmp_path / "m.pt")
    with pytest.raises(NegationClipError, match=r"m\.pt: item 0: missing 'sop_data.negative-prompt'"):
        load_ccneg(tmp_path / "m.pt")
    torch.save({"paths": []}, tmp_path / "k.pt")
    with pytest.raises(NegationClipError, match=r"k\.pt: expected 'image_paths' and 'annotations'"):
        load_ccneg(tmp_path / "k.pt")


# --- SugarCREPE ------------------------------------------------------------------------------

SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


@pytest.fixture(scope="module")
def sugar_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sugar")
    images = d / "val2017"
    for i in range(6):
        fabricate_image(images / f"{i:012d}.jpg", 40, 30, f"sc{i}")
    for s, sub in enumerate(SUBSETS):
        ann = {str(10 * s + 3 * j): {"filename": f"{(s + j) % 6:012d}.jpg",
                                     "caption": f"A {sub.replace('_', ' ')} scene, number {j}: “café”",
                                     "negative_caption": f"A {sub} scene with no {j}, 'really'"}
               for j in range(3)}
        if sub == "swap_obj":  # an exact tie: caption == negative
            ann["99"] = {"filename": "000000000000.jpg", "caption": "a dog", "negative_caption": "a dog"}
        (d / f"{sub}.json").write_text(json.dumps(ann, ensure_ascii=False), encoding="utf-8")
    return d, images


def _ref_image_caption_selection(bundle, root, ann_file):
    """CLIP_benchmark: SugarCrepe dataset + image_caption_selection.evaluate (one batch)."""
    ann = json.load(open(ann_file, encoding="utf-8"))
    image_score, text_score, score = [], [], []
    with torch.no_grad():
        for idx in ann:
            data = ann[idx]
            img = bundle.transform([Image.open(os.path.join(root, data["filename"])).convert("RGB")])
            texts = [data["caption"], data["negative_caption"]]
            images_emb = F.normalize(image_features(bundle.model, img), dim=-1)
            toks = [bundle.tokenizer([t]) for t in texts]
            texts_emb = F.normalize(torch.cat([text_features(bundle.model, t.input_ids, t.attention_mask)
                                               for t in toks]), dim=-1)
            gt = torch.arange(1)
            # CLIP_benchmark: images_emb @ texts_emb.t(). Written per caption so that identical
            # captions (the tie item) score bit-equal: in one batch their scores differ by float
            # noise (~1e-8), a coin flip whose side moves with the image pixels.
            scores = torch.stack([images_emb @ t for t in texts_emb], dim=1)
            image_closest_text = scores.argmax(dim=1)[:len(gt)]
            text_closest_image = scores.argmax(dim=0)[:len(gt)]
            pred_text_is_correct = (image_closest_text == gt).all().item()
            pred_image_is_correct = (text_closest_image == gt).all().item()
            image_score.append(pred_image_is_correct)
            text_score.append(pred_text_is_correct)
            score.append(pred_text_is_correct and pred_image_is_correct)
    return {"image_acc": torch.Tensor(image_score).float().mean().item(),
            "text_acc": torch.Tensor(text_score).float().mean().item(),
            "acc": torch.Tensor(score).float().mean().item()}


def test_sugarcrepe_matches_clip_benchmark(sugar_setup, tiny_bundle):
    d, images = sugar_setup
    res = evaluate_sugarcrepe(tiny_bundle, d, images)
    accs = []
    for sub in SUBSETS:
        ref = _ref_image_caption_selection(tiny_bundle, images, d / f"{sub}.json")
        for k, v in ref.items():
            assert res["subsets"][sub][k] == pytest.approx(v), (sub, k)
        accs.append(ref["acc"])
    assert res["accuracy_official"] == pytest.approx(sum(accs) / 7) == res["accuracy"]
    assert res["subsets"]["swap_obj"]["ties"] >= 1 and res["subsets_missing"] == []
    assert res["total"] == 22


def test_sugarcrepe_cli_writes_clip_benchmark_datasets(sugar_setup, ccneg_setup, tmp_path):
    d, images = sugar_setup
    cd, croot, pt, _, _ = ccneg_setup
    save(tiny_clip_bundle(seed=0), tmp_path / "m")
    out = tmp_path / "out"
    assert main(["eval", "--model", f"m={tmp_path / 'm'}", "--benchmark", "sugarcrepe",
                 "--sugarcrepe-dir", str(d), "--sugarcrepe-images", str(images),
                 "--benchmark", "ccneg", "--ccneg", str(pt), "--ccneg-images", str(croot),
                 "--out", str(out), "--cache-dir", "none", "--no-charts"]) == 0
    res = json.loads((out / "results.json").read_text())["results"]["m"]
    assert set(res) == {"sugarcrepe", "ccneg"}
    cb = json.loads((out / "clip_benchmark" / "sugar_crepe_add_att_m_en_image_caption_selection.json").read_text())
    assert cb["dataset"] == "sugar_crepe/add_att" and cb["task"] == "image_caption_selection"
    assert cb["metrics"]["acc"] == res["sugarcrepe"]["subsets"]["add_att"]["acc"]
    md = (out / "results.md").read_text()
    assert "swap_obj_acc (%)" in md
