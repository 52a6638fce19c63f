from __future__ import annotations

import json

from PIL import Image

from negationclip.cli import main
from negationclip.utils import load_json, read_jsonl

from .conftest import hf_tokenizer, tiny_text_model


def test_t2i_compare_sheet_and_judge(sd_folder, text_encoder_folder, clip_and_clipseg, tmp_path, capsys):
    judge_dir = clip_and_clipseg[0]  # a tiny CLIP folder, standing in for a plain judge CLIP
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "s", "prompt": "a street with no cars",
                                   "present": "a street", "absent": "cars"}) + "\n")
    out = tmp_path / "t2i"
    argv = ["t2i", "--pipeline", str(sd_folder), "--text-encoder", str(text_encoder_folder),
            "--prompts", str(prompts), "--compare", "--out", str(out), "--seeds", "3",
            "--steps", "2", "--height", "32", "--width", "32", "--thumb", "32",
            "--judge", "clip", "--judge-model", str(judge_dir)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "tokenizer kept" in text and "negation score" in text
    for label in ("original", "negationclip"):
        recs = read_jsonl(out / label / "manifest.jsonl")
        assert [(r["id"], r["seed"]) for r in recs] == [("s", 3)]
    a = Image.open(out / "original" / "images" / "s_s3.png").tobytes()
    b = Image.open(out / "negationclip" / "images" / "s_s3.png").tobytes()
    assert a != b
    assert Image.open(out / "contact_sheet.png").size[0] == 2 * 36 + 4
    scores = load_json(out / "negation_score.json")
    assert set(scores) == {"original", "negationclip"} and scores["original"]["images"] == 1
    # resume: nothing to generate, no pipeline loaded; other settings into the same folder refused
    assert main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert main(argv[:-4] + ["--steps", "3"]) == 2
    assert "holds results made with steps=2" in capsys.readouterr().err


def test_t2i_mismatch_is_one_line_error(sd_folder, tmp_path, capsys):
    te = tmp_path / "wide-te"
    tiny_text_model(48).save_pretrained(str(te))
    hf_tokenizer().save_pretrained(str(te))
    capsys.readouterr()
    rc = main(["t2i", "--pipeline", str(sd_folder), "--text-encoder", str(te), "--out",
               str(tmp_path / "o"), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith("error: ") and "width 48" in err and "does not fit" in err
    assert "Traceback" not in err


def test_segment_and_segment_eval(clip_and_clipseg, tmp_path, capsys):
    negclip_dir, _, clipseg_dir = clip_and_clipseg
    img = tmp_path / "img.png"
    Image.new("RGB", (20, 10), (50, 60, 70)).save(img)
    out = tmp_path / "seg.png"
    rc = main(["segment", "--clipseg", str(clipseg_dir), "--text-encoder", str(negclip_dir),
               "--image", str(img), "--text", "a dog with no collar", "--text", "a dog",
               "--out", str(out), "--mask-out", str(tmp_path / "m.png")])
    assert rc == 0
    assert Image.open(out).size == (40, 10)
    assert Image.open(tmp_path / "m_0.png").size == (20, 10)
    assert "vision tower: identical" in capsys.readouterr().out

    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    inst = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                             "area": 100, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "iscrowd": 0}]}
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    (tmp_path / "negref.json").write_text(json.dumps([{"image": "a.png", "phrase": "the dog with no collar",
                                                       "ref_bbox": [0, 0, 10, 10], "bbox_list": [[0, 0, 10, 10]]}]))
    rc = main(["segment-eval", "--clipseg", str(clipseg_dir), "--format", "negref",
               "--data", str(tmp_path / "negref.json"), "--instances", str(tmp_path / "inst.json"),
               "--images", str(tmp_path / "images"), "--out", str(tmp_path / "ev")])
    assert rc == 0
    s = load_json(tmp_path / "ev" / "seg_eval.json")
    assert s["n"] == 1 and s["negated"]["n"] == 1 and s["label"] == "clipseg"
    assert "mIoU" in capsys.readouterr().out
    rc = main(["segment-eval", "--clipseg", str(clipseg_dir), "--format", "refcocog",
               "--data", str(tmp_path / "negref.json"), "--images", str(tmp_path / "images"),
               "--out", str(tmp_path / "ev2")])
    assert rc == 2 and "needs --instances" in capsys.readouterr().err
