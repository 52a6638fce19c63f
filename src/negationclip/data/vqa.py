"""VQAv2 questions + annotations (the layout of ``v2_OpenEnded_mscoco_*_questions.json`` and
``v2_mscoco_*_annotations.json``), joined by question id."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..utils import NegationClipError, load_json
from ._common import need, need_list, write_json


@dataclass
class VqaItem:
    question_id: int
    image_id: int
    question: str
    answers: list[str]  # the (usually 10) human answers
    multiple_choice_answer: str
    answer_type: str  # "yes/no", "number" or "other"
    question_type: str  # e.g. "is the", "what color is the"

    @property
    def majority_answer(self) -> str:
        """Most frequent human answer; ties go to ``multiple_choice_answer`` when it is tied."""
        if not self.answers:
            return self.multiple_choice_answer
        counts = Counter(a.strip().lower() for a in self.answers)
        best = max(counts.values())
        tied = [a for a, c in counts.items() if c == best]
        mca = self.multiple_choice_answer.strip().lower()
        return mca if mca in tied else tied[0]


def load_vqa(questions_path: str | os.PathLike, annotations_path: str | os.PathLike) -> list[VqaItem]:
    """Join a VQAv2 questions file and its annotations file; every question needs its annotation."""
    qobj = load_json(questions_path)
    aobj = load_json(annotations_path)
    anns: dict[int, dict] = {}
    for i, rec in enumerate(need_list(aobj, "annotations", annotations_path)):
        loc = f"annotations[{i}]"
        qid = need(rec, "question_id", int, annotations_path, loc)
        need(rec, "image_id", int, annotations_path, loc)
        answers = need(rec, "answers", list, annotations_path, loc)
        for j, a in enumerate(answers):
            need(a, "answer", str, annotations_path, f"{loc}.answers[{j}]")
        need(rec, "multiple_choice_answer", str, annotations_path, loc)
        anns[qid] = rec
    items: list[VqaItem] = []
    for i, rec in enumerate(need_list(qobj, "questions", questions_path)):
        loc = f"questions[{i}]"
        qid = need(rec, "question_id", int, questions_path, loc)
        image_id = need(rec, "image_id", int, questions_path, loc)
        question = need(rec, "question", str, questions_path, loc)
        ann = anns.get(qid)
        if ann is None:
            raise NegationClipError(f"{questions_path}: {loc}: question_id {qid} has no annotation "
                                    f"in {annotations_path}")
        if ann["image_id"] != image_id:
            raise NegationClipError(f"{annotations_path}: question_id {qid}: image_id "
                                    f"{ann['image_id']} differs from the question's {image_id}")
        items.append(VqaItem(question_id=qid, image_id=image_id, question=question,
                             answers=[a["answer"] for a in ann["answers"]],
                             multiple_choice_answer=ann["multiple_choice_answer"],
                             answer_type=str(ann.get("answer_type", "")),
                             question_type=str(ann.get("question_type", ""))))
    return items


def write_vqa(questions_path: str | os.PathLike, annotations_path: str | os.PathLike,
              items: Iterable[VqaItem], *, data_subtype: str = "train2014") -> None:
    """Write both VQAv2 files for ``items``."""
    items = list(items)
    answer_lists: dict[tuple[str, ...], list[dict]] = {}  # shared: most answer lists repeat

    def answers(ans: list[str]) -> list[dict]:
        key = tuple(ans)
        if key not in answer_lists:
            answer_lists[key] = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                 for k, a in enumerate(ans)]
        return answer_lists[key]

    info = {"description": "negationclip VQA", "version": "2.0", "year": 2026}
    license_ = {"name": "", "url": ""}
    write_json(questions_path, {
        "info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": license_,
        "data_subtype": data_subtype,
        "questions": [{"image_id": it.image_id, "question": it.question,
                       "question_id": it.question_id} for it in items]})
    write_json(annotations_path, {
        "info": info, "license": license_, "data_subtype": data_subtype, "data_type": "mscoco",
        "annotations": [{"question_type": it.question_type,
                         "multiple_choice_answer": it.multiple_choice_answer,
                         "answers": answers(it.answers),
                         "image_id": it.image_id, "answer_type": it.answer_type,
                         "question_id": it.question_id} for it in items]})
