"""Build a NegWorld export: images plus the real dataset formats, all under one folder.

Layout (``manifest.json`` lists the same files)::

    images/000001.png ...           scenes (COCO ``file_name``; ids from 1)
    images/foil_00NNNN.png          the foil images of negation pairs (test only; not in COCO)
    captions_{train,val,test}.json  COCO captions, one file per split (like captions_train2014)
    instances_{train,val,test}.json COCO instances: 10 categories, polygon masks, iscrowd 0
    vqa_questions_{split}.json      VQAv2 questions  (v2_OpenEnded_mscoco_*_questions layout)
    vqa_annotations_{split}.json    VQAv2 annotations (v2_mscoco_*_annotations layout)
    negref.json                     NegRefCOCOg format (test scenes; ``image`` is a file name in images/)
    valse_existence.json            VALSE existence piece format (test scenes)
    negation_pairs.json             balanced negated retrieval (test; paths relative to the root)
    negbench_mcq.csv                NegBench multiple choice (released CSV layout; test scenes)
    negbench_retrieval.csv          NegBench retrieval: filepath, captions (a list literal)
    negbench_negated_retrieval.csv  the same captions, each with a true "There is no N ..."
    ccneg.jsonl                     CC-Neg items (image_path, json.caption, sop_data.negative-prompt)
    ccneg.pt                        the same in CoN-CLIP's torch layout (only with ccneg_pt)
    sugarcrepe/<subset>.json        SugarCREPE's 7 subsets ({id: {filename, caption, negative_caption}})
    scenes.json                     the scene graphs (ground truth of every image, foils included)
    manifest.json                   seed, config, counts, files

Splits are by image: pretraining and fine-tuning read the train (and val) files only, and no
test image or foil appears in them. The folder is written atomically: a killed build leaves
no half-written export (rerunning takes seconds).
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ...utils import JsonlWriter, NegationClipError, atomic_dir, load_json, progress, torch_bytes
from .._common import need, write_json
from ..coco import CocoAnnotation, CocoCaption, CocoImage, write_coco_captions, write_coco_instances
from ..negref import NegRefItem, write_negref
from ..valse import ValseItem, write_valse
from ..vqa import VqaItem, write_vqa
from . import field
from .captions import captions as make_captions
from .captions import noun_phrase, questions as make_questions
from .phrasing import HELDOUT_PAIR_TEMPLATES, TRAIN_PAIR_TEMPLATES
from .render import bbox, bbox_of, outline, polygon_area, segmentation_of, write_pngs
from .scenes import Obj, Scene, WorldConfig, plausible_absent, replace_object, sample_scene, scene_rng
from .vocab import CATEGORY_IDS, CONTEXT_OF, PARTS, article, plural

SPLITS = ("train", "val", "test")
FORMAT = "negworld/1"


# --- negation pairs ---------------------------------------------------------------------------

@dataclass
class NegationPair:
    id: str
    text: str  # true of ``image``, false of ``foil_image``
    image: str  # path relative to the export root
    foil_image: str  # same scene with one object replaced by ``negated_object``
    negated_object: str
    heldout_phrasing: bool  # phrased with a cue no training text uses (phrasing.HELDOUT_CUES)
    template: str
    split: str = "test"


def load_negation_pairs(path: str | os.PathLike) -> list[NegationPair]:
    obj = load_json(path)
    if not isinstance(obj, list):
        raise NegationClipError(f"{path}: expected a JSON list of pairs, got {type(obj).__name__}")
    out = []
    for i, rec in enumerate(obj):
        loc = f"record {i}"
        out.append(NegationPair(
            id=need(rec, "id", str, path, loc), text=need(rec, "text", str, path, loc),
            image=need(rec, "image", str, path, loc),
            foil_image=need(rec, "foil_image", str, path, loc),
            negated_object=need(rec, "negated_object", str, path, loc),
            heldout_phrasing=need(rec, "heldout_phrasing", bool, path, loc),
            template=need(rec, "template", str, path, loc),
            split=need(rec, "split", str, path, loc)))
    return out


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _make_pairs(scene: Scene, cfg: WorldConfig, next_id: int,
                rng: random.Random | None = None) -> list[tuple[NegationPair, Scene]]:
    if len(scene.objects) < 2:
        return []
    rng = rng or scene_rng(cfg.seed, scene.id, "pairs")
    slots = rng.sample(range(len(scene.objects)), min(cfg.pairs_per_scene, len(scene.objects)))
    out = []
    for j in slots:
        neg = plausible_absent(scene, rng)
        if neg is None:
            continue
        foil = replace_object(scene, j, neg, next_id + len(out))
        others = [o for k, o in enumerate(scene.objects) if k != j]
        shown = rng.sample(others, rng.randint(1, min(2, len(others))))
        pos = " and ".join(noun_phrase(o, rng, part=0.2) for o in shown)
        heldout = rng.random() < cfg.heldout_fraction
        template = rng.choice(HELDOUT_PAIR_TEMPLATES if heldout else TRAIN_PAIR_TEMPLATES)
        text = _sentence(template.format(pos=pos, neg=neg, neg_pl=plural(neg),
                                         a_neg=f"{article(neg)} {neg}"))
        out.append((NegationPair(id=f"pair_{scene.id:06d}_{j}", text=text,
                                 image=f"images/{scene.file_name}",
                                 foil_image=f"images/{foil.file_name}", negated_object=neg,
                                 heldout_phrasing=heldout, template=template), foil))
    return out


# --- NegRef -----------------------------------------------------------------------------------

def negref_box(obj: Obj, cfg: WorldConfig, side: int) -> list[float]:
    """The expanded, clipped box NegRef uses for an object."""
    x, y, w, h = bbox(obj)
    e = cfg.negref_expand
    x0, y0 = max(0.0, x - e * w), max(0.0, y - e * h)
    x1, y1 = min(float(side), x + w + e * w), min(float(side), y + h + e * h)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


_PART_NOUN = {"dot": "dot", "border": "border"}
_NEGREF_PART = ("the {cat} without {part}", "the {cat} with no {noun}",
                "{a_cat} that has no {noun}", "the {cat} that does not have {part}")
_NEGREF_ATTR = ("the {cat} that is not {value}", "{a_cat} which is not {value}")


def _make_negref(scene: Scene, cfg: WorldConfig, rng: random.Random | None = None) -> list[NegRefItem]:
    """Negated referring expressions: P+ is the only object of its category lacking a property
    that the other same-category objects (P-) have; then size filter and expanded boxes."""
    rng = rng or scene_rng(cfg.seed, scene.id, "negref")
    min_side = cfg.negref_min_box * scene.width
    items = []
    for cat in sorted(scene.categories()):
        group = [o for o in scene.objects if o.category == cat]
        if len(group) < 2:
            continue
        cands = []
        props = [("part", p) for p in PARTS] + [("color", o.color) for o in group] + \
                [("size", o.size) for o in group]
        for kind, value in dict.fromkeys(props):
            has = [o for o in group if (o.has(value) if kind == "part" else getattr(o, kind) == value)]
            lacks = [o for o in group if o not in has]
            if len(lacks) == 1 and has:
                cands.append((kind, value, lacks[0], has))
        rng.shuffle(cands)
        for kind, value, pos, negs in cands[:2]:
            if any(min(bbox(o)[2:]) < min_side for o in [pos, *negs]):
                continue
            if kind == "part":
                phrase = rng.choice(_NEGREF_PART).format(cat=cat, part=PARTS[value],
                                                         noun=_PART_NOUN[value],
                                                         a_cat=f"{article(cat)} {cat}")
            else:
                phrase = rng.choice(_NEGREF_ATTR).format(cat=cat, value=value,
                                                         a_cat=f"{article(cat)} {cat}")
            ref = negref_box(pos, cfg, scene.width)
            items.append(NegRefItem(image=scene.file_name, phrase=phrase, ref_bbox=ref,
                                    bbox_list=[ref] + [negref_box(o, cfg, scene.width) for o in negs]))
    return items


# --- VALSE existence --------------------------------------------------------------------------

_VALSE_TAIL = ("", " in the picture", " visible", " in the image")


def _make_valse(scene: Scene, cfg: WorldConfig, rng: random.Random | None = None) -> ValseItem | None:
    rng = rng or scene_rng(cfg.seed, scene.id, "valse")
    tail = rng.choice(_VALSE_TAIL)
    if rng.random() < 0.5:
        cat = plausible_absent(scene, rng)
        if cat is None:
            return None
        count, prov = 0, "zero_to_something"
        caption, foil = f"There are no {plural(cat)}{tail}.", f"There are {plural(cat)}{tail}."
        classes_foil = [1]
    else:
        cat = rng.choice(sorted(scene.categories()))
        count, prov = scene.count(cat), "something_to_zero"
        if count == 1:
            caption, foil = f"There is {article(cat)} {cat}{tail}.", f"There is no {cat}{tail}."
        else:
            caption, foil = f"There are {plural(cat)}{tail}.", f"There are no {plural(cat)}{tail}."
        classes_foil = [0]
    key = f"existence_negworld_{scene.id}"
    raw = {"dataset": "negworld", "dataset_idx": str(scene.id), "image_file": scene.file_name,
           "linguistic_phenomena": "existence", "caption": caption, "answer": count,
           "classes": count, "split": "test", "original_split": scene.split,
           "classes_foil": classes_foil, "declarative_statement": caption,
           "declarative_statement_foils": [foil], "provenance_of_foils": prov,
           "mturk": {"foil": 0, "caption": 3, "other": 0}, "foil": foil, "negworld_object": cat}
    return ValseItem(key=key, image_file=scene.file_name, caption=caption, foil=foil,
                     dataset="negworld", piece="existence", raw=raw)


# --- the build --------------------------------------------------------------------------------

def assign_splits(cfg: WorldConfig, ids: list[int]) -> dict[int, str]:
    fr = cfg.split_fractions
    if set(fr) - set(SPLITS) or any(v < 0 for v in fr.values()) or sum(fr.values()) <= 0:
        raise NegationClipError(f"split fractions must be non-negative numbers for {SPLITS}: {fr}")
    order = list(ids)
    random.Random(f"negworld/{cfg.seed}/split").shuffle(order)
    total = sum(fr.values())
    n_test = round(len(order) * fr.get("test", 0) / total)
    n_val = round(len(order) * fr.get("val", 0) / total)
    out = {}
    for k, i in enumerate(order):
        out[i] = "test" if k < n_test else ("val" if k < n_test + n_val else "train")
    return out


def _check_config(cfg: WorldConfig) -> None:
    if cfg.images < 1:
        raise NegationClipError(f"--images must be at least 1, got {cfg.images}")
    if cfg.size < 16:
        raise NegationClipError(f"--size must be at least 16 pixels, got {cfg.size}")
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        raise NegationClipError(f"need 1 <= min_objects <= max_objects, got "
                                f"{cfg.min_objects}, {cfg.max_objects}")
    if cfg.captions_per_image < 1:
        raise NegationClipError(f"captions per image must be at least 1, got {cfg.captions_per_image}")
    if not 0 <= cfg.questions_per_image <= 999:
        raise NegationClipError(f"questions per image must be 0-999, got {cfg.questions_per_image}")
    if cfg.pairs_per_scene < 0:
        raise NegationClipError(f"pairs per scene must be >= 0, got {cfg.pairs_per_scene}")
    if not 0.0 <= cfg.heldout_fraction <= 1.0:
        raise NegationClipError(f"held-out fraction must be in [0, 1], got {cfg.heldout_fraction}")


def _check_out(out: Path, overwrite: bool) -> None:
    """Never replace a folder that is not a NegWorld export (``--out ~`` must not wipe a home)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NegationClipError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / "manifest.json").is_file():
        raise NegationClipError(f"{out}: exists, is not empty and is not a NegWorld export; "
                                f"choose another output folder")
    if not overwrite:
        raise NegationClipError(f"{out}: a NegWorld export is already there "
                                f"(pass --overwrite, or overwrite=True, to replace it)")


def build_world(out: str | os.PathLike, cfg: WorldConfig, *, overwrite: bool = False,
                show_progress: bool = True) -> dict:
    """Render ``cfg.images`` scenes and write every export under ``out``; returns the manifest.

    An existing export at ``out`` is replaced only with ``overwrite``; any other non-empty
    folder is refused."""
    _check_config(cfg)
    out = Path(out)
    _check_out(out, overwrite)
    ids = list(range(1, cfg.images + 1))
    splits = assign_splits(cfg, ids)
    scenes: list[Scene] = []
    coco_images = {s: [] for s in SPLITS}
    coco_caps = {s: [] for s in SPLITS}
    coco_anns = {s: [] for s in SPLITS}
    vqa = {s: [] for s in SPLITS}
    pairs: list[NegationPair] = []
    negref: list[NegRefItem] = []
    valse: list[ValseItem] = []
    foils: list[Scene] = []
    mcq: list[dict] = []
    retrieval: list[dict] = []
    negated_retrieval: list[dict] = []
    ccneg: list[dict] = []
    sugarcrepe: dict[str, list[tuple[str, str, str]]] = {k: [] for k in field.SUGARCREPE_SUBSETS}
    cap_id = ann_id = 0
    with atomic_dir(out) as tmp:
        img_dir = tmp / "images"
        img_dir.mkdir()

        renders: list[tuple[Scene, Path]] = []  # drawn after the loop, over all cores

        def save(scene: Scene) -> None:
            renders.append((scene, img_dir / scene.file_name))

        next_foil = cfg.images + 1
        for idx in progress(ids, desc="negworld scenes", unit="img", disable=not show_progress or None):
            scene = sample_scene(cfg, idx, idx)
            scene.split = split = splits[idx]
            scenes.append(scene)
            save(scene)
            coco_images[split].append(CocoImage(scene.id, scene.file_name, scene.width, scene.height))
            text_rng = scene_rng(cfg.seed, idx, "text")  # captions, questions, test items
            texts = make_captions(scene, text_rng, cfg.captions_per_image)
            for t in texts:
                cap_id += 1
                coco_caps[split].append(CocoCaption(cap_id, scene.id, t))
            for o in scene.objects:
                ann_id += 1
                pts = outline(o)
                coco_anns[split].append(CocoAnnotation(
                    ann_id, scene.id, CATEGORY_IDS[o.category], bbox_of(pts),
                    round(polygon_area(o), 2), segmentation_of(pts), 0))
            qs = make_questions(scene, text_rng, cfg.questions_per_image)
            for k, q in enumerate(qs):
                vqa[split].append(VqaItem(question_id=scene.id * 1000 + k, image_id=scene.id,
                                          question=q["question"], answers=[q["answer"]] * 10,
                                          multiple_choice_answer=q["answer"],
                                          answer_type=q["answer_type"],
                                          question_type=q["question_type"]))
            if split == "test":
                for pair, foil in _make_pairs(scene, cfg, next_foil, text_rng):
                    foil.split = "test"
                    next_foil += 1
                    save(foil)
                    foils.append(foil)
                    pairs.append(pair)
                negref.extend(_make_negref(scene, cfg, text_rng))
                v = _make_valse(scene, cfg, text_rng)
                if v is not None:
                    valse.append(v)
                # the field's benchmark formats, each from its own stream (adding one never
                # changes another's records)
                path = f"images/{scene.file_name}"
                mcq.extend(field.negbench_mcq(scene, path, scene_rng(cfg.seed, idx, "negbench")))
                retrieval.append(field.negbench_retrieval(path, texts))
                negated_retrieval.append(field.negbench_negated_retrieval(
                    scene, path, texts, scene_rng(cfg.seed, idx, "negbench-retrieval")))
                ccneg.append(field.ccneg_record(scene, path, scene_rng(cfg.seed, idx, "ccneg")))
                for name, (cap, neg) in field.sugarcrepe_items(
                        scene, scene_rng(cfg.seed, idx, "sugarcrepe")).items():
                    sugarcrepe[name].append((scene.file_name, cap, neg))

        files: dict = {"images": "images", "captions": {}, "instances": {}, "vqa_questions": {},
                       "vqa_annotations": {}}
        cats = {cid: name for name, cid in CATEGORY_IDS.items()}
        supers = {cid: CONTEXT_OF[name] for name, cid in CATEGORY_IDS.items()}
        for s in SPLITS:
            files["captions"][s] = f"captions_{s}.json"
            files["instances"][s] = f"instances_{s}.json"
            files["vqa_questions"][s] = f"vqa_questions_{s}.json"
            files["vqa_annotations"][s] = f"vqa_annotations_{s}.json"
            write_coco_captions(tmp / files["captions"][s], coco_images[s], coco_caps[s],
                                description=f"NegWorld captions ({s})")
            write_coco_instances(tmp / files["instances"][s], coco_images[s], cats, coco_anns[s],
                                 supercategories=supers, description=f"NegWorld instances ({s})")
            write_vqa(tmp / files["vqa_questions"][s], tmp / files["vqa_annotations"][s], vqa[s],
                      data_subtype=f"negworld_{s}")
        files.update(negref="negref.json",
                     valse_existence="valse_existence.json", negation_pairs="negation_pairs.json",
                     scenes="scenes.json")
        write_negref(tmp / files["negref"], negref)
        write_valse(tmp / files["valse_existence"], valse)
        write_json(tmp / files["negation_pairs"], [asdict(p) for p in pairs], indent=1)
        files.update(negbench_mcq="negbench_mcq.csv", negbench_retrieval="negbench_retrieval.csv",
                     negbench_negated_retrieval="negbench_negated_retrieval.csv",
                     ccneg="ccneg.jsonl")
        field.write_csv(tmp / files["negbench_mcq"], field.MCQ_COLUMNS, mcq)
        field.write_csv(tmp / files["negbench_retrieval"], field.RETRIEVAL_COLUMNS, retrieval)
        field.write_csv(tmp / files["negbench_negated_retrieval"], field.RETRIEVAL_COLUMNS,
                        negated_retrieval)
        with JsonlWriter(tmp / files["ccneg"], append=False, fsync=False) as w:
            w.write_many(ccneg)
        if cfg.ccneg_pt:
            files["ccneg_pt"] = "ccneg.pt"
            (tmp / files["ccneg_pt"]).write_bytes(torch_bytes(field.ccneg_torch_layout(ccneg)))
        files["sugarcrepe"] = field.write_sugarcrepe(tmp / "sugarcrepe", sugarcrepe)
        write_json(tmp / files["scenes"], {"format": FORMAT, "config": asdict(cfg),
                                           "scenes": [s.to_json() for s in scenes + foils]})
        write_pngs(renders, cfg.supersample, cfg.png_compress_level)
        counts = {"images": len(scenes), "foil_images": len(foils),
                  "split_images": {s: len(coco_images[s]) for s in SPLITS},
                  "captions": {s: len(coco_caps[s]) for s in SPLITS},
                  "instances": {s: len(coco_anns[s]) for s in SPLITS},
                  "vqa_questions": {s: len(vqa[s]) for s in SPLITS},
                  "vqa_no_share": round(sum(q.multiple_choice_answer == "no" for s in SPLITS
                                            for q in vqa[s]) /
                                        max(1, sum(q.answer_type == "yes/no" for s in SPLITS
                                                   for q in vqa[s])), 3),
                  "negref": len(negref), "valse_existence": len(valse),
                  "negation_pairs": len(pairs),
                  "negation_pairs_heldout": sum(p.heldout_phrasing for p in pairs),
                  "negbench_mcq": len(mcq),
                  "negbench_mcq_by_template": {t: sum(r["correct_answer_template"] == t for r in mcq)
                                               for t in field.MCQ_TEMPLATES},
                  "negbench_retrieval_images": len(retrieval),
                  "ccneg": len(ccneg),
                  "sugarcrepe": {k: len(v) for k, v in sugarcrepe.items()}}
        manifest = {"format": FORMAT, "seed": cfg.seed, "config": asdict(cfg), "counts": counts,
                    "files": files, "image_root": "images",
                    "notes": "COCO/VQA files are per split; negref.json, valse_existence.json, "
                             "negation_pairs.json and the NegBench / CC-Neg / SugarCREPE files "
                             "hold test scenes only; foil images appear only in "
                             "negation_pairs.json and scenes.json. NegBench and CC-Neg paths are "
                             "relative to this folder, SugarCREPE filenames to images/."}
        write_json(tmp / "manifest.json", manifest, indent=2)
    return manifest


# --- reading an export back -------------------------------------------------------------------

@dataclass
class WorldExport:
    """Paths of an export, read from its manifest."""
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | os.PathLike) -> "WorldExport":
        root = Path(root)
        man = load_json(root / "manifest.json")
        if not isinstance(man, dict) or man.get("format") != FORMAT:
            raise NegationClipError(f"{root / 'manifest.json'}: not a NegWorld manifest "
                                    f"(format {FORMAT!r} expected)")
        return cls(root=root, manifest=man)

    def _f(self, key: str, split: str | None = None) -> Path:
        if key not in self.manifest["files"]:
            raise NegationClipError(f"{self.root / 'manifest.json'}: this export has no {key!r} "
                                    f"file (made by an older negationclip, or without the option "
                                    f"that writes it); rebuild it with `negationclip world build`")
        v = self.manifest["files"][key]
        if split is not None:
            if split not in v:
                raise NegationClipError(f"{self.root}: no {key} entry {split!r} (have {sorted(v)})")
            v = v[split]
        return self.root / v

    @property
    def images_dir(self) -> Path:
        return self.root / self.manifest.get("image_root", "images")

    def captions(self, split: str) -> Path:
        return self._f("captions", split)

    def instances(self, split: str) -> Path:
        return self._f("instances", split)

    def vqa(self, split: str) -> tuple[Path, Path]:
        return self._f("vqa_questions", split), self._f("vqa_annotations", split)

    @property
    def negref(self) -> Path:
        return self._f("negref")

    @property
    def valse_existence(self) -> Path:
        return self._f("valse_existence")

    @property
    def negation_pairs(self) -> Path:
        return self._f("negation_pairs")

    @property
    def scenes(self) -> Path:
        return self._f("scenes")

    @property
    def negbench_mcq(self) -> Path:
        return self._f("negbench_mcq")

    @property
    def negbench_retrieval(self) -> Path:
        return self._f("negbench_retrieval")

    @property
    def negbench_negated_retrieval(self) -> Path:
        return self._f("negbench_negated_retrieval")

    @property
    def ccneg(self) -> Path:
        """``ccneg.jsonl``; ``ccneg_pt`` is the torch file, when built with ``ccneg_pt``."""
        return self._f("ccneg")

    @property
    def ccneg_pt(self) -> Path:
        return self._f("ccneg_pt")

    def sugarcrepe(self, subset: str) -> Path:
        return self._f("sugarcrepe", subset)

    @property
    def sugarcrepe_dir(self) -> Path:
        return self.sugarcrepe("add_obj").parent


def load_scenes(path: str | os.PathLike) -> dict[str, Scene]:
    """Scene graphs of an export keyed by file name (``000001.png``, ``foil_000123.png``)."""
    obj = load_json(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("scenes"), list):
        raise NegationClipError(f"{path}: not a NegWorld scenes file (no 'scenes' list)")
    out = {}
    for i, d in enumerate(obj["scenes"]):
        try:
            s = Scene.from_json(d)
        except (TypeError, KeyError) as e:
            raise NegationClipError(f"{path}: scenes[{i}]: malformed scene ({e})") from None
        out[s.file_name] = s
    return out
