import json

import pytest
import torch
import torch.nn.functional as F

from negationclip.evaluate.metrics import recall_at_k_i2t, recall_at_k_t2i
from negationclip.evaluate.retrieval import evaluate_retrieval
from negationclip.evaluate.zeroshot import evaluate_zeroshot, imagenet_classnames, imagenet_templates
from negationclip.models import encode_text, image_features, open_image
from negationclip.utils import NegationClipError

from .conftest import fabricate_image


def _img(bundle, path):
    with torch.no_grad():
        return F.normalize(image_features(bundle.model, bundle.transform([open_image(path)])), dim=-1)[0]


def test_shipped_imagenet_metadata():
    names, tmpl = imagenet_classnames(), imagenet_templates("openai")
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert len(tmpl) == 80 and tmpl[0] == "a bad photo of a {c}." and all("{c}" in t for t in tmpl)
    assert len(imagenet_templates("simple")) == 7


def test_zeroshot_folder_and_list_file_match_manual(tmp_path, tiny_bundle):
    classes = ["golden_retriever", "tabby_cat", "red_car"]
    root = tmp_path / "tree"
    lines = []
    for ci, c in enumerate(classes):
        for k in range(2):
            fabricate_image(root / c / f"{k}.jpg", 40, 36, f"{c}{k}")
            lines.append(f"{c}/{k}.jpg {ci}")
    (tmp_path / "list.txt").write_text("# path label\n" + "\n".join(lines) + "\n")
    templates = ["a photo of a {c}.", "a drawing of the {c}."]
    res = evaluate_zeroshot(tiny_bundle, root, templates=templates)
    names = [c.replace("_", " ") for c in classes]
    w = encode_text(tiny_bundle, [t.replace("{c}", n) for n in names for t in templates])
    w = F.normalize(w.view(3, 2, -1).mean(1), dim=-1)
    preds = [int((_img(tiny_bundle, root / c / f"{k}.jpg") @ w.T).argmax()) for c in classes for k in range(2)]
    expected = sum(p == i // 2 for i, p in enumerate(preds)) / 6
    assert res["accuracy"] == pytest.approx(expected) and res["top1"] == res["accuracy"]
    assert res["top5"] == 1.0 and res["total"] == 6 and res["classes"] == 3
    res2 = evaluate_zeroshot(tiny_bundle, list_file=tmp_path / "list.txt", image_root=root,
                             classnames=names, templates=templates)
    assert res2["top1"] == res["top1"]
    (tmp_path / "bad.txt").write_text("a/0.jpg\n")
    with pytest.raises(NegationClipError, match=r"bad\.txt:1"):
        evaluate_zeroshot(tiny_bundle, list_file=tmp_path / "bad.txt", classnames=names)


def test_retrieval_karpathy_and_coco_captions_agree_with_manual(tmp_path, tiny_bundle):
    root = tmp_path / "coco"
    caps = {f"im{i}.jpg": [f"a photo number {i} of a dog", f"picture {i} with no cat"] for i in range(4)}
    for n in caps:
        fabricate_image(root / "val2014" / n, 32, 32, n)
    kp = {"images": [{"filepath": "val2014", "filename": n, "split": "test" if i < 3 else "train",
                      "cocoid": i, "sentences": [{"raw": c} for c in cs]}
                     for i, (n, cs) in enumerate(caps.items())]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(kp))
    res = evaluate_retrieval(tiny_bundle, tmp_path / "dataset_coco.json", image_root=root)
    names = list(caps)[:3]
    img = torch.stack([_img(tiny_bundle, root / "val2014" / n) for n in names])
    texts = [c for n in names for c in caps[n]]
    sim = img @ encode_text(tiny_bundle, texts).T
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    expected = recall_at_k_i2t(sim, owner) | recall_at_k_t2i(sim, owner)
    for k, v in expected.items():
        assert res[k] == pytest.approx(v), k
    assert res["images"] == 3 and res["texts"] == 6
    cc = {"images": [{"id": i, "file_name": f"val2014/{n}", "width": 32, "height": 32}
                     for i, n in enumerate(caps)],
          "annotations": [{"id": 10 * i + j, "image_id": i, "caption": c}
                          for i, n in enumerate(caps) for j, c in enumerate(caps[n])]}
    (tmp_path / "captions.json").write_text(json.dumps(cc))
    (tmp_path / "list.txt").write_text("val2014/im0.jpg\n1\nval2014/im2.jpg\n")
    res2 = evaluate_retrieval(tiny_bundle, captions=tmp_path / "captions.json",
                              image_list=tmp_path / "list.txt", image_root=root)
    for k in expected:
        assert res2[k] == pytest.approx(res[k])
